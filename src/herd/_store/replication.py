"""Stores across regions: each region's logs replicate to the others asynchronously, with
JetStream's own mechanism (docs/regions.md).

Each region's servers are a JetStream domain of their own (the region's name), joined to the
others by leaf-node connections that carry JetStream's API and nothing of the regions' own
writes (`nats_server.REGION_LOCAL`). `link` makes every log stream (``LOG_*``) of any region
exist in every region, each sourcing the same-named stream of every other region through that
region's domain (``$JS.<region>.API``). A write is acknowledged in its region, as before; the
others copy it when their source consumer next pulls (milliseconds apart on one machine), and a
region that was away catches up from where its sources stopped. A sourced message keeps its
``Nats-Msg-Id`` (the write's own key), so the copy a region gets back of its own write is a
duplicate within the stream's window and is dropped: no loop.

Records (key-value buckets, kept by compare-and-set on a region's own revisions) do not
replicate: merging concurrent writes of one key from two regions needs a rule herd does not
have (Cassandra's last write wins).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ExternalStream, StreamConfig, StreamSource

#: The streams that replicate: the stores' logs (`herd._store.jetstream`).
REPLICATED = "LOG_"


def api_prefix(region: str) -> str:
    """The subject prefix of `region`'s JetStream API, as another region reaches it."""
    return f"$JS.{region}.API"


async def link(regions: Mapping[str, JetStreamContext]) -> list[str]:
    """Make every replicated stream of any of `regions` exist in each of them, sourcing the
    others'; the changes made, as ``region/stream`` (none once everything is linked)."""
    configs: dict[str, StreamConfig] = {}
    present: dict[str, set[str]] = {}
    for region, js in regions.items():
        present[region] = set()
        for info in await js.streams_info():
            config = info.config
            if config.name and config.name.startswith(REPLICATED):
                present[region].add(config.name)
                configs.setdefault(config.name, config)
    changed = []
    for region, js in regions.items():
        for name, config in sorted(configs.items()):
            sources = [
                StreamSource(name=name, external=ExternalStream(api=api_prefix(other)))
                for other in sorted(regions)
                if other != region
            ]
            if name in present[region]:
                current = (await js.stream_info(name)).config
                have = {s.external.api for s in current.sources or [] if s.external is not None}
                if have == {s.external.api for s in sources if s.external is not None}:
                    continue
                await js.update_stream(_with_sources(current, sources))
            else:
                try:
                    await js.add_stream(_with_sources(config, sources))
                except nats.js.errors.BadRequestError:
                    continue  # made meanwhile by the region's own service: linked next time
            changed.append(f"{region}/{name}")
    return changed


def _with_sources(config: StreamConfig, sources: list[StreamSource]) -> StreamConfig:
    return dataclasses.replace(config, sources=sources)
