// herd trace: one kept trace as a waterfall, from /api/trace?id=... (plain JavaScript; every
// value from the server is set as text, never as HTML).
"use strict";

function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) element.setAttribute(name, String(value));
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    element.append(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
  return element;
}

// Depth first, each span under its parent, siblings by start: [[depth, span], ...].
function treeOrder(spans) {
  const ids = new Set(spans.map((span) => span.span_id));
  const children = new Map();
  for (const span of [...spans].sort((a, b) => a.start - b.start)) {
    const parent = ids.has(span.parent) ? span.parent : null;
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(span);
  }
  const ordered = [];
  const visit = (parent, depth) => {
    for (const span of children.get(parent) || []) {
      ordered.push([depth, span]);
      visit(span.span_id, depth + 1);
    }
  };
  visit(null, 0);
  return ordered;
}

function render(trace) {
  const { summary, spans } = trace;
  document.getElementById("summary").textContent =
    `${summary.request} → ${summary.status} in ${summary.duration_ms.toFixed(1)} ms (kept: ${summary.reason})`;
  const begin = Math.min(...spans.map((span) => span.start));
  const end = Math.max(...spans.map((span) => span.start + span.duration_ms / 1000));
  const total = Math.max(end - begin, 1e-9);
  const rows = treeOrder(spans).map(([depth, span]) => {
    const a = span.attributes;
    const where = [a["herd.instance"], a["herd.zone"] && `zone ${a["herd.zone"]}`, a["herd.version"]]
      .filter(Boolean).join(" · ");
    const left = ((span.start - begin) / total) * 100;
    const width = Math.max((span.duration_ms / 1000 / total) * 100, 0.3);
    const outcome = a["herd.outcome"] || "";
    return h("tr", { "data-span": span.span_id, "data-service": span.service, "data-outcome": outcome },
      h("td", { class: "name", style: `padding-left: ${depth * 14}px` }, span.name),
      h("td", { class: "service" }, span.service),
      h("td", { class: "bar" },
        h("div", { class: `bar ${span.failed ? "failed" : outcome === "cancelled" ? "cancelled" : ""}`,
          style: `margin-left: ${left}%; width: ${width}%` })),
      h("td", { class: "ms" }, span.duration_ms.toFixed(1)),
      h("td", {}, outcome),
      h("td", { class: "where" }, where));
  });
  document.getElementById("waterfall").replaceChildren(
    h("tr", {}, ["span", "service", "waterfall", "ms", "outcome", "instance"].map((c) => h("th", {}, c))),
    ...rows);
}

async function load() {
  const id = new URLSearchParams(location.search).get("id") || "";
  const answer = await fetch(`/api/trace?id=${encodeURIComponent(id)}`);
  if (!answer.ok) {
    document.getElementById("summary").textContent = `no kept trace ${id}`;
    return;
  }
  render(await answer.json());
}

load();
