"""What the simulation simulates: instances (the server side), the network between them, and the
naive client the talk warns about. Everything a herd caller decides runs herd's own `Caller`.

A `Node` is one instance. It models herd's server pipeline (`herd._server.server`) in a few lines
rather than running it, because that pipeline starts from an HTTP request: it refuses an expired
deadline, sheds retries with herd's own `RetryPressure` and load above its in-flight limit, runs
the handler under herd's own deadline scope (`scope_at`, cancelled when it passes), and answers
errors with the same kinds (`deadline_exceeded`, `dependency`, `overloaded`) in the same msgpack
`ErrorBody`, which the real `Caller` then judges. A handler runs in the caller's task, so a caller
that gives up (its attempt timer fires) cancels it, as aiohttp does when a herd caller hangs up.

Naive services (aiohttp + httpx + tenacity in the real experiment) are modelled as they behave:
no deadline travels, a handler keeps running after its caller gave up, each attempt waits up to
2 s for a pooled connection (100 per process) and then up to 2 s for the answer, three attempts at
the one address DNS gave.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import enum
import random
import types
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import herd
from herd._client.driver import Caller, Transport, TransportFactory
from herd._client.metrics import ClientMetrics
from herd._model import clock
from herd._model.deadline import scope_at
from herd._model.errors import HerdError
from herd._model.interface import MethodSpec, methods
from herd._server.shedding import RetryPressure
from herd._wire.protocol import H_ATTEMPT, H_DEADLINE, ConnectFailed, encode, error_reply

#: One-way network delay within a zone and across zones, seconds.
SAME_ZONE_S = 0.0002
CROSS_ZONE_S = 0.001
#: herd's server defaults: the in-flight limit and the time a request without a deadline gets.
MAX_INFLIGHT = 512
DEFAULT_TIMEOUT_S = 30.0
#: The naive client's settings (httpx's `timeout=2.0` for every phase, tenacity's 3 attempts,
#: httpx's pool of 100 connections).
NAIVE_TIMEOUT_S = 2.0
NAIVE_ATTEMPTS = 3
NAIVE_POOL = 100

#: The front door's place: outside every zone, so every edge instance is a cross-zone hop.
FRONT_DOOR = "front"

_OK = encode(1)
T = TypeVar("T")


class State(enum.Enum):
    """How an instance behaves."""

    UP = "up"
    HUNG = "hung"
    """Accepts requests and never answers (a process stuck, not dead)."""
    DEAD = "dead"
    """Its process is gone: connections are refused at once."""
    LOST = "lost"
    """Its zone is unreachable: connections time out."""


class Mode(enum.Enum):
    """How callers call: the three configurations of the retry-storm experiment."""

    NAIVE = "naive"
    TELESCOPED = "telescoped"
    HERD = "herd"


def interface(service: str) -> MethodSpec:
    """The one method (`handle`, idempotent) of a simulated service named `service`."""

    async def handle(self: Any, item: int) -> int: ...  # type: ignore[empty-body]

    handle.__annotations__ = {"item": int, "return": int}
    decorated = herd.method(idempotent=True)(handle)
    cls = types.new_class(
        f"Sim_{service.replace('-', '_')}",
        (herd.Interface,),
        {"name": service},
        lambda ns: ns.update(handle=decorated),
    )
    return methods(cls)["handle"]


#: A handler: what an instance does with a request once admitted (service time, downstream calls).
Handler = Callable[["Node"], Awaitable[None]]

#: A server pipeline: a request's headers and its network delay in, status and body out.
Pipeline = Callable[[dict[str, str], float], Awaitable[tuple[int, bytes]]]

#: Which backend a telescoped caller's virtual IP sends this request to: chosen once per request
#: (like a DNS answer), so its retry reaches the same instance over a new connection.
_sticky: contextvars.ContextVar[int] = contextvars.ContextVar("herd_sim_sticky", default=0)


class Node:
    """One simulated instance: its state, counters, and the server pipeline's model."""

    __slots__ = (
        "inflight",
        "instance",
        "pipeline",
        "pool",
        "pressure",
        "received",
        "service",
        "slow",
        "state",
        "tier",
        "world",
        "zone",
    )

    def __init__(self, world: World, instance: herd.Instance, tier: Tier) -> None:
        self.world = world
        self.instance = instance
        self.service = instance.service
        self.zone = instance.zone
        self.tier = tier
        self.state = State.UP
        self.slow = 1.0
        self.inflight = 0
        self.received = 0
        self.pressure: RetryPressure | None = None
        self.pool: asyncio.Semaphore | None = None
        self.pipeline: Pipeline | None = None
        """A server pipeline of its own in place of `serve`'s (the overload scenario's)."""

    def service_time(self) -> float:
        """A draw of this instance's own work per request (log-normal around the tier's median)."""
        tier = self.tier
        return tier.median_s * self.world.rng.lognormvariate(0.0, tier.sigma) * self.slow

    async def serve(self, headers: dict[str, str], delay: float) -> tuple[int, bytes]:
        """herd's server pipeline, modelled: guards, then the handler under the deadline."""
        self.received += 1
        tier = self.tier
        tier.received += 1
        if self.pipeline is not None:
            return await self.pipeline(headers, delay)
        if self.state is State.HUNG:
            await self._hang()
        raw = headers.get(H_DEADLINE)
        timeout = DEFAULT_TIMEOUT_S if raw is None else int(raw) / 1000.0
        if timeout <= 0:
            return _reply("deadline_exceeded", "the deadline passed before the request came")
        pressure = self.pressure
        if pressure is None:
            pressure = self.pressure = RetryPressure()
        if not pressure.admit(int(headers.get(H_ATTEMPT, "1"))) and self.inflight >= (
            MAX_INFLIGHT // 2
        ):
            return _reply("overloaded", "too many retries, do not retry", retry=False)
        if self.inflight >= MAX_INFLIGHT:
            return _reply("overloaded", f"{self.inflight} requests in flight")
        self._enter()
        ends = clock.monotonic() + timeout
        scope = scope_at(ends)
        # The handler runs in its caller's task: whatever it sets in the context is undone after.
        sticky = _sticky.set(self.world.rng.randrange(1 << 30)) if self.world.vips else None
        try:
            with scope:
                await asyncio.sleep(delay + self.service_time())
                await tier.handler(self)
            return 200, _OK
        except TimeoutError as exc:
            left = ends - clock.monotonic()
            if scope.fired or not isinstance(exc, HerdError) or left <= 0.02:
                return _reply("deadline_exceeded", "ran out of time")
            return _reply("dependency", f"{type(exc).__name__}: {exc}")
        except HerdError as exc:
            return _reply("dependency", f"{type(exc).__name__}: {exc}")
        finally:
            if sticky is not None:
                _sticky.reset(sticky)
            self._leave()

    async def serve_naive(self, delay: float) -> bool:
        """A naive (aiohttp) service: no deadline, no shedding; True if it answered OK."""
        self.received += 1
        self.tier.received += 1
        if self.state is State.HUNG:
            await self._hang()
        self._enter()
        try:
            await asyncio.sleep(delay + self.service_time())
            await self.tier.handler(self)
            return True
        except Exception:
            return False
        finally:
            self._leave()

    def _enter(self) -> None:
        self.inflight += 1
        tier = self.tier
        tier.inflight += 1
        if tier.inflight > tier.peak:
            tier.peak = tier.inflight

    def _leave(self) -> None:
        self.inflight -= 1
        self.tier.inflight -= 1

    async def _hang(self) -> None:
        # Until the caller gives up and cancels it (a naive caller never does).
        await asyncio.get_running_loop().create_future()


def _reply(kind: str, message: str, *, retry: bool = True) -> tuple[int, bytes]:
    reply = error_reply(kind, message, retry=retry)
    return reply.status, reply.body


class Tier:
    """One service: its instances, what each does, and the callers that reach it."""

    def __init__(
        self,
        world: World,
        service: str,
        median_s: float,
        *,
        sigma: float = 0.5,
        handler: Handler | None = None,
    ) -> None:
        self.world = world
        self.service = service
        self.spec = interface(service)
        self.args = self.spec.args_type(1)
        self.median_s = median_s
        self.sigma = sigma
        self.handler: Handler = handler or _leaf
        self.nodes: list[Node] = []
        self.by_id: dict[str, Node] = {}
        self.by_zone: dict[str, list[Node]] = {}
        # What callers see: the registered instances; a new list on every change, which the
        # attempt loop takes as its cue to forget departed instances.
        self.registered: list[herd.Instance] = []
        self.received = 0
        self.inflight = 0
        self.peak = 0

    def add(self, zone: str) -> Node:
        """Start one instance in `zone`."""
        index = len(self.nodes)
        instance = herd.Instance(
            id=f"{self.service}-{index}",
            service=self.service,
            group=f"{self.service}-v001",
            version="v001",
            zone=zone,
            host=f"10.{index // 65536}.{index // 256 % 256}.{index % 256}",
            port=7000,
            status=herd.Status.UP,
        )
        node = Node(self.world, instance, self)
        self.nodes.append(node)
        self.by_id[instance.id] = node
        self.by_zone.setdefault(zone, []).append(node)
        self.registered = [*self.registered, instance]
        return node

    def deregister(self, nodes: Sequence[Node]) -> None:
        """The registry evicts `nodes` (their leases ran out)."""
        gone = {node.instance.id for node in nodes}
        self.registered = [i for i in self.registered if i.id not in gone]

    def instances(self, service: str) -> Sequence[herd.Instance]:
        """The resolver's answer: the registered instances."""
        return self.registered

    async def start(self) -> None:
        """Nothing to follow: the simulation changes `registered` itself."""

    async def close(self) -> None:
        """Nothing to stop."""


async def _leaf(node: Node) -> None:
    """A service with no dependencies: its service time is all it does."""


class _Vip:
    """A resolver of one virtual IP under two ids: every caller of `tier` in one zone reaches it
    through these, and the network picks the backend once per request (`_sticky`)."""

    def __init__(self, tier: Tier, zone: str) -> None:
        self._instances = [
            herd.Instance(
                id=f"{tier.service}-vip-{zone}#{n}",
                service=tier.service,
                group=f"{tier.service}-vip",
                version="v001",
                zone=zone,
                host="vip",
                port=n,
                status=herd.Status.UP,
            )
            for n in (1, 2)
        ]

    def instances(self, service: str) -> Sequence[herd.Instance]:
        return self._instances

    async def start(self) -> None:
        """Nothing to follow."""

    async def close(self) -> None:
        """Nothing to stop."""


class _Link:
    """The transport from callers in one zone to one instance (or one virtual IP)."""

    __slots__ = ("connect_timeout", "node", "tier", "world", "zone")

    def __init__(
        self, world: World, zone: str, tier: Tier, node: Node | None, connect_timeout: float
    ) -> None:
        self.world = world
        self.zone = zone
        self.tier = tier
        self.node = node
        self.connect_timeout = connect_timeout

    async def call(
        self, service: str, method: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        node = self.node
        if node is None:
            node = self.world.resolve(self.tier, self.zone, _sticky.get())
        self.world.sent += 1
        delay = SAME_ZONE_S if node.zone == self.zone else CROSS_ZONE_S
        state = node.state
        if state is State.DEAD:
            await asyncio.sleep(2 * delay)
            raise ConnectFailed(f"{node.instance.id}: connection refused")
        if state is State.LOST:
            await asyncio.sleep(self.connect_timeout)
            raise ConnectFailed(f"{node.instance.id}: connect timed out")
        return await node.serve(headers, 2 * delay)

    async def close(self) -> None:
        """Nothing held."""


def _aggregate(policy: herd.CallPolicy, clients: int) -> herd.CallPolicy:
    """The policy of one `Caller` standing for `clients` callers: their retry budgets' reserves
    and their bulkheads add up (a budget is linear in its reserve, so the sum of the clients'
    budgets is one budget with the summed reserve). Breakers and ejection are not scaled: one
    caller sees the volume of all, so it trips and ejects on fewer seconds of failures."""
    budget = dataclasses.replace(
        policy.budget, min_retries_per_s=policy.budget.min_retries_per_s * clients
    )
    return dataclasses.replace(
        policy, budget=budget, max_concurrent=policy.max_concurrent * clients
    )


class World:
    """The simulated system: tiers of instances, the network, and the callers between tiers."""

    def __init__(self, mode: Mode, seed: int, *, per_instance: bool = False) -> None:
        self.mode = mode
        self.vips = mode is Mode.TELESCOPED
        self.per_instance = per_instance
        self.rng = random.Random(seed)
        # Users arrive from a generator of their own, so every configuration sees the same users.
        self.arrivals = random.Random(seed)
        self.metrics = ClientMetrics()
        self.tiers: dict[str, Tier] = {}
        self._callers: dict[tuple[str, str], Caller] = {}
        self._policies: dict[str, herd.CallPolicy] = {}
        # Tasks nobody awaits (handlers a naive caller gave up on, injected faults): the loop
        # holds tasks weakly, so the world keeps them until they end.
        self._background: set[asyncio.Task[Any]] = set()
        self.sent = 0

    def background(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `coro` in a task of its own that lives until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def tier(self, service: str, median_s: float, handler: Handler | None = None) -> Tier:
        """Add a service whose instances each take about `median_s` of their own per request."""
        tier = self.tiers[service] = Tier(self, service, median_s, handler=handler)
        return tier

    def policy(self, service: str, policy: herd.CallPolicy) -> None:
        """How every caller calls `service` (default: herd's `CallPolicy()`)."""
        self._policies[service] = policy

    def resolve(self, tier: Tier, zone: str, sticky: int) -> Node:
        """What a zone-local DNS name (or virtual IP) of `tier` resolves to for one request:
        an instance in `zone` if there is one, else anywhere, chosen by `sticky`."""
        nodes = tier.by_zone.get(zone) or tier.nodes
        return nodes[sticky % len(nodes)]

    def _factory(self, zone: str, tier: Tier) -> TransportFactory:
        def make(instance: herd.Instance, connect_timeout: float) -> Transport:
            node = None if instance.host == "vip" else tier.by_id[instance.id]
            return _Link(self, zone, tier, node, connect_timeout)

        return make

    def caller(self, node: Node | str, service: str) -> Caller:
        """The herd `Caller` through which `node` calls `service`: its own with `per_instance`,
        otherwise the one that every instance of its tier in its zone shares. `FRONT_DOOR` for
        `node` is the front door's, outside every zone."""
        if isinstance(node, str):
            zone = node
            key = (node, service)
        else:
            zone = node.zone
            key = (node.instance.id if self.per_instance else f"{node.service}@{zone}", service)
        caller = self._callers.get(key)
        if caller is None:
            tier = self.tiers[service]
            resolver: Any = _Vip(tier, zone) if self.mode is Mode.TELESCOPED else tier
            policy = self._policies.get(service) or herd.CallPolicy()
            if not isinstance(node, str) and not self.per_instance:
                policy = _aggregate(policy, len(node.tier.by_zone[zone]))
            caller = self._callers[key] = Caller(
                service,
                resolver,
                policy,
                None if zone == FRONT_DOOR else zone,
                owns_resolver=False,
                metrics=self.metrics,
                rng=random.Random(self.rng.random()),
                transport=self._factory(zone, tier),
            )
        return caller

    async def call(self, node: Node, service: str) -> None:
        """`node` calls `service` the way this world's mode does."""
        if self.mode is Mode.NAIVE:
            await self._naive(node, self.tiers[service])
            return
        tier = self.tiers[service]
        await self.caller(node, service).call(tier.spec, tier.args)

    async def _naive(self, node: Node, tier: Tier) -> None:
        """httpx + tenacity: three attempts at the address DNS gave, 2 s for a pooled connection
        and 2 s for the answer each; the called handler runs on when this caller gives up."""
        target = self.resolve(tier, node.zone, self.rng.randrange(1 << 30))
        pool = node.pool
        if pool is None:
            pool = node.pool = asyncio.Semaphore(NAIVE_POOL)
        delay = 2 * (SAME_ZONE_S if target.zone == node.zone else CROSS_ZONE_S)
        for _ in range(NAIVE_ATTEMPTS):
            if pool.locked():
                try:
                    await asyncio.wait_for(pool.acquire(), NAIVE_TIMEOUT_S)
                except TimeoutError:
                    continue
            else:
                # A free connection is taken at once: no waiting task and timer to pay for.
                await pool.acquire()
            try:
                self.sent += 1
                if target.state is State.DEAD:
                    await asyncio.sleep(delay)
                    continue
                if target.state is State.LOST:
                    await asyncio.sleep(NAIVE_TIMEOUT_S)
                    continue
                if target.state is State.HUNG:
                    # What `serve_naive` does with it (counted, never answered), without a
                    # task held for the rest of the run: the caller gives up after its timeout.
                    target.received += 1
                    target.tier.received += 1
                    await asyncio.sleep(NAIVE_TIMEOUT_S)
                    continue
                task = self.background(target.serve_naive(delay))
                try:
                    async with asyncio.timeout(NAIVE_TIMEOUT_S):
                        answered = await asyncio.shield(task)
                except TimeoutError:
                    continue
                if answered:
                    return
            finally:
                pool.release()
        raise herd.Unavailable(f"{tier.service}: {NAIVE_ATTEMPTS} attempts failed")
