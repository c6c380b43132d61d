"""Spans reach a user's OpenTelemetry collector through the standard `OTEL_*` variables: two
service processes (the chain's middle and deep) export OTLP/HTTP to a receiver on loopback,
which decodes what arrives with OpenTelemetry's own protobuf messages."""

from __future__ import annotations

import gzip
import http.server
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.helpers import MSGPACK, service_process

pytestmark = pytest.mark.timeout(60)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


class Receiver:
    """An OTLP/HTTP traces endpoint (`POST /v1/traces`, protobuf): every span it was sent, with
    its resource's `service.name`."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                receiver.received(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def received(self, request: ExportTraceServiceRequest) -> None:
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        {
                            "service": resource.get("service.name"),
                            "name": span.name,
                            "kind": span.kind,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "attributes": {a.key: a.value for a in span.attributes},
                        }
                    )
        with self.changed:
            self.spans.extend(found)
            self.changed.notify_all()

    def wait_for(self, count: int, timeout: float) -> list[dict[str, Any]]:
        """The spans of `TRACE_ID`, once at least `count` arrived (fails after `timeout`)."""

        def ours() -> list[dict[str, Any]]:
            return [s for s in self.spans if s["trace_id"] == TRACE_ID]

        with self.changed:
            arrived = self.changed.wait_for(lambda: len(ours()) >= count, timeout)
            assert arrived, f"only these arrived: {self.spans}"
            return ours()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def test_spans_reach_a_collector_named_by_the_standard_variables(
    receiver: Receiver, tmp_path: Path
) -> None:
    # What a user sets: the exporter and its endpoint; a short batch delay keeps the test short.
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    with (
        service_process("deep", tmp_path, env=env) as deep,
        service_process("middle", tmp_path, deep.address, env=env) as middle,
    ):
        # A caller from outside that traces (a sampled trace context): middle continues it.
        request = urllib.request.Request(
            f"http://{middle.address}/rpc/middle/relay",
            data=msgspec.msgpack.encode(["traced", False]),
            headers={
                "Content-Type": MSGPACK,
                "x-herd-deadline-ms": "5000",
                "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
        spans = receiver.wait_for(4, timeout=15)
    by_name = {span["name"]: span for span in spans}
    assert set(by_name) == {"middle relay", "deep.echo", "deep attempt 1", "deep echo"}, spans
    served, call, attempt, deep_served = (
        by_name[name] for name in ("middle relay", "deep.echo", "deep attempt 1", "deep echo")
    )
    # Each process names itself; each span's parent is the one before it, across processes.
    assert [s["service"] for s in (served, call, attempt)] == ["middle"] * 3
    assert deep_served["service"] == "deep"
    assert served["parent"] == CALLER_SPAN
    assert call["parent"] == served["span_id"]
    assert attempt["parent"] == call["span_id"]
    assert deep_served["parent"] == attempt["span_id"]
    assert attempt["attributes"]["server.address"].string_value == deep.address
    assert attempt["attributes"]["herd.attempt"].int_value == 1
