"""Spans as the tests see them: an OTLP/HTTP receiver on loopback (what the real processes export to),
and the tree of one trace, printed and compared by name."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.support.servers import LoopbackServer


@dataclass
class SpanRecord:
    """One span, whichever exporter it came through."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    attributes: dict
    service: str = ""
    start_ns: int = 0
    children: list[SpanRecord] = field(default_factory=list)


def from_sdk(spans) -> list[SpanRecord]:
    """Spans of opentelemetry-sdk's InMemorySpanExporter."""
    return [
        SpanRecord(
            s.name,
            f"{s.context.trace_id:032x}",
            f"{s.context.span_id:016x}",
            f"{s.parent.span_id:016x}" if s.parent else None,
            dict(s.attributes or {}),
            s.resource.attributes.get("service.name", ""),
            s.start_time or 0,
        )
        for s in spans
    ]


def _value(v) -> object:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class OtlpReceiver:
    """Accepts `POST /v1/traces` (OTLP/HTTP protobuf, as OTLPSpanExporter sends it) and keeps every span."""

    def __init__(self) -> None:
        self.spans: list[SpanRecord] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                req = ExportTraceServiceRequest.FromString(body)
                receiver._add(req)
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = LoopbackServer(Handler)

    @property
    def endpoint(self) -> str:
        return self.server.base

    def _add(self, req: ExportTraceServiceRequest) -> None:
        got = []
        for rs in req.resource_spans:
            service = next((_value(a.value) for a in rs.resource.attributes if a.key == "service.name"), "")
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(
                        SpanRecord(
                            s.name,
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex() or None,
                            {a.key: _value(a.value) for a in s.attributes},
                            str(service),
                            s.start_time_unix_nano,
                        )
                    )
        with self.lock:
            self.spans.extend(got)

    def wait_for(self, name: str, timeout: float) -> list[SpanRecord]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if any(s.name == name for s in self.spans):
                    return list(self.spans)
            time.sleep(0.2)
        raise AssertionError(f"no span {name!r} within {timeout:g} s; got {sorted({s.name for s in self.spans})}")

    def close(self) -> None:
        self.server.close()


def tree(spans: list[SpanRecord], trace_id: str) -> list[SpanRecord]:
    """The roots of one trace, each with its children (in start order); spans whose parent is missing
    are roots too, so a lost parent shows."""
    mine = [s for s in spans if s.trace_id == trace_id]
    for s in mine:
        s.children = []
    by_id = {s.span_id: s for s in mine}
    roots = []
    for s in sorted(mine, key=lambda s: s.start_ns):
        parent = by_id.get(s.parent_id) if s.parent_id else None
        (parent.children if parent else roots).append(s)
    return roots


def render(roots: list[SpanRecord], keys: tuple[str, ...] = ("request_id", "run_id")) -> str:
    lines: list[str] = []

    def walk(s: SpanRecord, depth: int) -> None:
        shown = " ".join(f"{k}={str(s.attributes[k])[:8]}" for k in keys if k in s.attributes)
        service = f" [{s.service}]" if s.service else ""
        lines.append(f"{'  ' * depth}{s.name}{service} {shown}".rstrip())
        for c in s.children:
            walk(c, depth + 1)

    for r in roots:
        walk(r, 0)
    return "\n".join(lines)


def find(root: SpanRecord, name: str) -> list[SpanRecord]:
    """Every span called `name` under `root` (itself included), depth first."""
    found = [root] if root.name == name else []
    for c in root.children:
        found += find(c, name)
    return found


def shape(s: SpanRecord, skip: tuple[str, ...] = ()) -> tuple:
    """(name, children's shapes) with the spans named in `skip` left out (the ASGI send/receive spans)."""
    return (s.name, tuple(shape(c, skip) for c in s.children if not c.name.endswith(skip)))
