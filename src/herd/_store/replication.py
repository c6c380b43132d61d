"""Stores across regions: each region's logs replicate to the others asynchronously, with
JetStream's own mechanism (docs/regions.md).

Each region's servers are a JetStream domain of their own (the region's name), joined to the
others by leaf-node connections that carry JetStream's API and nothing of the regions' own
writes (`nats_server.REGION_LOCAL`). `link` gives every region a **mirror** of every other
region's log streams (``LOG_*``), named ``FROM_<region>_<stream>``, which follows the original
through that region's domain (``$JS.<region>.API``). A write is acknowledged in its region, as
before; the others copy it when their mirror next pulls (milliseconds apart on one machine),
and a region that was away catches up from where its mirrors stopped.

Mirrors, not sources into the regions' own streams: a stream that sources another which
sources it back gets its own writes back, and nats-server 2.9 takes each such duplicate as an
error and retries the source from it for ever (the source stalls). A mirror copies one stream
as it is and is never copied again, so there is no loop to break.

Records (key-value buckets, kept by compare-and-set on a region's own revisions) do not
replicate: merging concurrent writes of one key from two regions needs a rule herd does not
have (Cassandra's last write wins).
"""

from __future__ import annotations

from collections.abc import Mapping

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource

#: The streams that replicate: the stores' logs (`herd._store.jetstream`).
REPLICATED = "LOG_"


def api_prefix(region: str) -> str:
    """The subject prefix of `region`'s JetStream API, as another region reaches it."""
    return f"$JS.{region}.API"


def mirror_name(region: str, stream: str) -> str:
    """The stream that holds, in every other region, the copy of `region`'s `stream`."""
    return f"FROM_{region}_{stream}"


async def link(regions: Mapping[str, JetStreamContext], replicas: int = 1) -> list[str]:
    """Give each of `regions` a mirror (with `replicas` copies) of every replicated stream of
    every other; the mirrors made, as ``region/mirror`` (none once everything is linked)."""
    own: dict[str, set[str]] = {}
    present: dict[str, set[str]] = {}
    for region, js in regions.items():
        own[region], present[region] = set(), set()
        for info in await js.streams_info():
            name = info.config.name or ""
            present[region].add(name)
            if name.startswith(REPLICATED) and info.config.mirror is None:
                own[region].add(name)
    made = []
    for region, js in regions.items():
        for other, streams in sorted(own.items()):
            for stream in sorted(streams):
                mirror = mirror_name(other, stream)
                if other == region or mirror in present[region]:
                    continue
                origin = StreamSource(name=stream, external=ExternalStream(api=api_prefix(other)))
                config = StreamConfig(
                    name=mirror, mirror=origin, storage=StorageType.FILE, num_replicas=replicas
                )
                try:
                    await js.add_stream(config)
                except nats.js.errors.BadRequestError:
                    continue  # made meanwhile: linked already
                made.append(f"{region}/{mirror}")
    return made


async def copied(js: JetStreamContext, region: str, stream: str, subject: str) -> bool:
    """Whether this region's mirror of `region`'s `stream` holds a message on `subject`."""
    try:
        await js.get_msg(mirror_name(region, stream), subject=subject)
    except nats.js.errors.NotFoundError:
        return False
    return True
