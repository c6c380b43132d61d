// herd dashboard: renders the control plane's snapshots (one a second, as server-sent events).
// Plain JavaScript and SVG, no framework or chart library: nothing to fetch at run time, and
// little enough to read in one sitting. Every value from the server is set as text, never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "herd-token";
let token = null;
let last = null;

// -- elements

function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  return fill(element, attrs, children);
}

function s(tag, attrs, ...children) {
  const element = document.createElementNS(SVG, tag);
  return fill(element, attrs, children);
}

function fill(element, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "onclick") element.addEventListener("click", value);
    else if (value !== null && value !== undefined && value !== false) {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    element.append(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
  return element;
}

function replace(id, ...children) {
  document.getElementById(id).replaceChildren(...children.flat());
}

// -- health colours: the same rule everywhere on the page

function health(errorPct, breaker) {
  if (breaker === "open" || errorPct >= 50) return "bad";
  if (breaker === "half_open" || errorPct >= 5) return "warn";
  return "ok";
}

const COLOURS = { ok: "#3fb950", warn: "#d29922", bad: "#f85149" };

function uptime(seconds) {
  if (seconds < 90) return `${Math.round(seconds)}s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)}m`;
  return `${(seconds / 3600).toFixed(1)}h`;
}

// -- front door sparklines

function sparkline(label, unit, points, digits) {
  const width = 260, height = 48;
  const values = points.filter((v) => Number.isFinite(v));
  const top = Math.max(1e-9, ...values);
  const bottom = Math.min(0, ...values);
  const step = points.length > 1 ? width / (points.length - 1) : width;
  const line = points
    .map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - ((v - bottom) / (top - bottom || 1)) * (height - 4)).toFixed(1)}`)
    .join(" ");
  const now = values.length ? values[values.length - 1] : 0;
  return h("div", { class: "spark", "data-spark": label },
    h("div", { class: "label" }, label),
    h("div", { class: "value" }, `${now.toFixed(digits)}${unit}`),
    s("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none" },
      s("polyline", { points: line })));
}

function renderFrontDoor(door) {
  const section = document.getElementById("front-door");
  section.hidden = !door;
  if (!door) return;
  replace("front-door-url", `${door.url} → ${door.service} · last ${Math.round(door.history.length)} s`);
  const history = door.history;
  replace("sparklines",
    sparkline("requests/s", "", history.map((p) => p[1]), 1),
    sparkline("success", " %", history.map((p) => p[2]), 2),
    sparkline("p99 at the front door", " ms", history.map((p) => p[3]), 1));
}

// -- traffic graph: services as nodes in columns by depth, instances as dots per zone

function depths(services, edges, door) {
  const depth = new Map(services.map((svc) => [svc.name, 0]));
  if (door) depth.set(door.service, 1);
  // Longest path from a root; a cycle stops growing after as many rounds as there are nodes.
  for (let round = 0; round < services.length; round++) {
    for (const edge of edges) {
      const from = depth.get(edge.from) ?? 0;
      if (depth.has(edge.to) && depth.get(edge.to) < from + 1) depth.set(edge.to, from + 1);
    }
  }
  return depth;
}

function renderGraph(snapshot) {
  const svg = document.getElementById("graph");
  const services = snapshot.services;
  const edges = snapshot.edges;
  const door = snapshot.front_door;
  const depth = depths(services, edges, door);
  const nodes = services.map((svc) => ({ name: svc.name, svc, depth: depth.get(svc.name) }));
  if (door) nodes.push({ name: "front door", door, depth: 0 });
  const columns = new Map();
  for (const node of nodes) {
    if (!columns.has(node.depth)) columns.set(node.depth, []);
    columns.get(node.depth).push(node);
  }
  const nodeW = 190, nodeH = 66, gapX = 90, gapY = 18;
  const place = new Map();
  let height = 0;
  for (const [column, members] of columns) {
    members.sort((a, b) => a.name.localeCompare(b.name));
    members.forEach((node, row) => {
      const x = 10 + column * (nodeW + gapX), y = 10 + row * (nodeH + gapY);
      place.set(node.name, { x, y });
      height = Math.max(height, y + nodeH + 10);
    });
  }
  const width = 20 + (Math.max(0, ...columns.keys()) + 1) * (nodeW + gapX);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.style.height = `${Math.max(120, height)}px`;
  const drawn = [
    s("defs", {}, ["ok", "warn", "bad"].map((kind) =>
      s("marker", { id: `arrow-${kind}`, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" },
        s("path", { d: "M0,0 L10,5 L0,10 z", fill: COLOURS[kind] })))),
  ];
  const links = edges.map((edge) => ({ ...edge, kind: health(edge.error_pct, edge.breaker) }));
  if (door) {
    links.push({ from: "front door", to: door.service, rps: door.rps, error_pct: 100 - door.success_pct,
      kind: health(100 - door.success_pct, "closed") });
  }
  for (const link of links) {
    const a = place.get(link.from), b = place.get(link.to);
    if (!a || !b) continue;
    const x1 = a.x + nodeW, y1 = a.y + nodeH / 2, x2 = b.x, y2 = b.y + nodeH / 2;
    const mid = (x1 + x2) / 2;
    drawn.push(s("path", { class: "edge", d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`,
      stroke: COLOURS[link.kind], "marker-end": `url(#arrow-${link.kind})`,
      "data-link": `${link.from}>${link.to}` }));
    // By the arrow's head: edges fanning out of one node share their start, not their end.
    drawn.push(s("text", { x: x2 - 10, y: y2 - 6, "text-anchor": "end", class: "dim" },
      `${link.rps.toFixed(1)}/s · ${link.error_pct.toFixed(1)}%`));
  }
  for (const node of nodes) {
    const { x, y } = place.get(node.name);
    const group = s("g", { "data-node": node.name });
    const kind = node.svc ? health(node.svc.error_pct, "closed") : "ok";
    group.append(s("rect", { class: "node", x, y, width: nodeW, height: nodeH, stroke: COLOURS[kind] }));
    group.append(s("text", { x: x + 8, y: y + 17 }, node.name));
    if (node.svc) {
      group.append(s("text", { x: x + 8, y: y + 34, class: "dim" },
        `${node.svc.rps.toFixed(1)}/s served · ${node.svc.error_pct.toFixed(1)}% err`));
      // One dot per instance, in a column per zone: green UP, grey otherwise.
      Object.entries(node.svc.zones).forEach(([zone, count], i) => {
        const zx = x + 8 + i * 60;
        group.append(s("text", { x: zx, y: y + 56, class: "dim" }, zone));
        for (let k = 0; k < count.total; k++) {
          group.append(s("circle", { cx: zx + 16 + k * 9, cy: y + 52, r: 3.5,
            fill: k < count.up ? COLOURS.ok : "#8b949e" }));
        }
      });
    } else {
      group.append(s("text", { x: x + 8, y: y + 34, class: "dim" },
        `${node.door.rps.toFixed(1)}/s · ${node.door.success_pct.toFixed(2)}% ok`));
      group.append(s("text", { x: x + 8, y: y + 52, class: "dim" }, `p99 ${node.door.p99_ms.toFixed(1)} ms`));
    }
    drawn.push(group);
  }
  svg.replaceChildren(...drawn);
}

// -- dependencies, Hystrix style: a circle per dependency, size for volume, colour for health

function renderDependencies(snapshot) {
  const edges = snapshot.edges;
  if (!edges.length) {
    replace("dependencies", h("span", { class: "meta" }, "no service calls another yet"));
    return;
  }
  replace("dependencies", edges.map((edge) => {
    const kind = health(edge.error_pct, edge.breaker);
    const radius = Math.min(30, 6 + 6 * Math.log10(1 + edge.rps));
    const budget = edge.budget_balance === null ? "-" : edge.budget_balance.toFixed(1);
    return h("div", { class: "card dep", "data-edge": `${edge.from}>${edge.to}`, "data-breaker": edge.breaker },
      s("svg", { viewBox: "0 0 64 64" },
        s("circle", { cx: 32, cy: 32, r: radius, fill: COLOURS[kind], "fill-opacity": 0.35, stroke: COLOURS[kind] })),
      h("div", {},
        h("h3", {}, `${edge.from} → ${edge.to}`,
          h("span", { class: `state ${kind}` }, `breaker ${edge.breaker.replace("_", "-")}`)),
        h("div", {}, `${edge.rps.toFixed(1)}/s · ${edge.error_pct.toFixed(1)}% errors`),
        h("div", { class: "meta" }, `p50 ${edge.p50_ms.toFixed(1)} ms · p99 ${edge.p99_ms.toFixed(1)} ms`),
        h("div", { class: "meta" },
          `window ${edge.requests} req / ${edge.failures} failed · open on ${edge.open} of ${edge.reporting}`),
        h("div", { class: "meta" },
          `retry budget ${budget} · bulkhead ${edge.bulkhead_in_use}/${edge.bulkhead_max}`)));
  }));
}

// -- server groups and their instances per zone

function renderGroups(snapshot) {
  replace("groups", snapshot.groups.map((group) => {
    const zones = new Map(snapshot.zones.map((zone) => [zone, []]));
    for (const instance of group.instances) {
      if (!zones.has(instance.zone)) zones.set(instance.zone, []);
      zones.get(instance.zone).push(instance);
    }
    const kind = group.status === "READY" ? "ok" : group.status === "CRASHLOOP" ? "bad" : "warn";
    return h("div", { class: "card", "data-group": group.name },
      h("h3", {}, group.name, h("span", { class: `state ${kind}` }, group.status)),
      h("div", { class: "meta" },
        `${group.service} ${group.version} · desired ${group.desired} · running ${group.running} · up ${group.up} `,
        h("button", { type: "button", title: "scale down", disabled: !token || group.desired === 0,
          onclick: () => act("scale", { group: group.name, count: group.desired - 1 }) }, "−"),
        " ",
        h("button", { type: "button", title: "scale up", disabled: !token,
          onclick: () => act("scale", { group: group.name, count: group.desired + 1 }) }, "+")),
      h("div", { class: "zones" }, [...zones].map(([zone, members]) =>
        h("div", { class: "zone", "data-zone": zone },
          h("h4", {}, `zone ${zone}`),
          members.map((instance) =>
            h("div", { class: "instance", "data-instance": instance.id, "data-status": instance.status },
              h("span", { class: "dot" }),
              h("span", { class: "id" }, instance.id),
              h("span", { class: "meta" },
                instance.pid ? `${uptime(instance.uptime_s)} · ${instance.rps.toFixed(1)}/s` +
                  (instance.limit == null ? "" : ` · limit ${instance.limit}`) +
                  (instance.shed_rps ? ` · shed ${instance.shed_rps.toFixed(1)}/s` : "")
                  : instance.status),
              token && instance.pid
                ? h("button", { type: "button", title: "SIGKILL (it is replaced)",
                  onclick: () => act("kill", { instance: instance.id }) }, "kill")
                : null))))));
  }));
}

// -- panels other parts of the control plane add (deploys, chaos, history): a titled table each;
// a cell is text, or {text, href} for a link (a kept trace's waterfall)

function cell(value) {
  return value !== null && typeof value === "object" ? h("a", { href: value.href }, value.text) : value;
}

function renderPanels(panels) {
  replace("panels", (panels || []).map((panel) =>
    h("section", { class: "band", "data-panel": panel.id },
      h("h2", {}, panel.title),
      h("table", {},
        h("tr", {}, panel.columns.map((column) => h("th", {}, column))),
        panel.rows.map((row) => h("tr", {}, row.map((value) => h("td", {}, cell(value)))))))));
}

function render(snapshot) {
  last = snapshot;
  replace("app", snapshot.app);
  replace("updated", `updated ${new Date(snapshot.at * 1000).toLocaleTimeString()}`);
  renderFrontDoor(snapshot.front_door);
  renderGraph(snapshot);
  renderDependencies(snapshot);
  renderGroups(snapshot);
  renderPanels(snapshot.panels);
}

// -- actions: only with the control token, sent as a header, never part of the page

function notice(text) {
  replace("notice", text);
}

async function act(action, body) {
  if (!token) return;
  const answer = await fetch(`/api/${action}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  if (answer.status === 403) {
    setToken(null);
    notice("the token was refused: actions locked");
    return;
  }
  const result = await answer.json();
  notice(answer.ok ? `${action}: ${result.id}` : `${action} failed: ${result.message}`);
}

function setToken(value) {
  token = value || null;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  const button = document.getElementById("unlock");
  button.textContent = token ? "lock actions" : "unlock actions";
  if (last) render(last);
}

function tokenFromFragment() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!match) return null;
  // Out of the address bar (and the history) as soon as it is read.
  history.replaceState(null, "", location.pathname + location.search);
  return decodeURIComponent(match[1]);
}

document.getElementById("unlock").addEventListener("click", () => {
  if (token) setToken(null);
  else setToken(prompt("control token (\"token\" in ~/.herd/cloud.json)"));
});

// -- the live feed

function connect() {
  const link = document.getElementById("link");
  const events = new EventSource("/events");
  events.addEventListener("open", () => {
    link.dataset.state = "live";
    link.textContent = "live";
  });
  events.addEventListener("snapshot", (event) => render(JSON.parse(event.data)));
  events.addEventListener("error", () => {
    // Each stream ends at its deadline; EventSource reconnects by itself.
    link.dataset.state = events.readyState === EventSource.CLOSED ? "lost" : "connecting";
    link.textContent = link.dataset.state;
  });
}

setToken(tokenFromFragment() || sessionStorage.getItem(TOKEN_KEY));
connect();
