"""OpenTelemetry traces: off unless an exporter is configured, and one trace per request across processes.

On when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or `OTEL_TRACES_EXPORTER`
(`otlp`, `console`) is set, and not `OTEL_SDK_DISABLED=true` / `OTEL_TRACES_EXPORTER=none`; the OTLP
exporter reads the other standard variables itself (headers, timeout, protocol http/protobuf).
Off, every call here is a no-op of the OpenTelemetry API.

How the spans of one request join up:
- The API's spans come from FastAPI's instrumentation; the upload's span gets a `request_id` attribute.
- The run launched for the upload carries the upload span's W3C `traceparent` as a run tag
  (`imgpipe/traceparent`, set by the API's fast path). A run without it (launched by the upload
  sensor, a retry or a backfill) uses the request id itself as its trace id, so every such run of one
  request lands in one trace.
- A run is a span (`run`) whose span id is derived from the Dagster run id: each step (`step <name>`),
  in whatever process or machine runs it, is a child of that id; the run span itself is emitted
  when the run ends its request (`end_run`), with the run's start time. Chunks (`chunk`) and webhook
  deliveries (`webhook.delivery`) are children of their step.
Run processes can end with `os._exit` (forked run workers skip atexit), so a step's spans are flushed
when the step ends (`flush`).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

if TYPE_CHECKING:  # the SDK is imported only when tracing is on (about 0.1 s per process otherwise)
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

TRACER_NAME = "image_pipeline"
# (trace id, span id) the next span must take: a run's span, whose ids its steps already used.
_forced_ids: ContextVar[tuple[int, int] | None] = ContextVar("imgpipe_forced_ids", default=None)
_provider: TracerProvider | None = None


def exporter_from_env(env: dict[str, str] | os._Environ = os.environ) -> str | None:
    """`otlp`, `console` or None (tracing off), from the standard OpenTelemetry variables."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    chosen = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if chosen == "none":
        return None
    if chosen:
        return chosen.split(",")[0].strip()
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return None


def make_provider(service: str, exporter: SpanExporter, *, batch: bool = True) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class RunSpanIds(RandomIdGenerator):
        """Random ids, except for a run's span, whose id its steps already used as their parent."""

        def generate_span_id(self) -> int:
            forced = _forced_ids.get()
            return forced[1] if forced is not None else super().generate_span_id()

        def generate_trace_id(self) -> int:  # asked only for a span without a parent
            forced = _forced_ids.get()
            return forced[0] if forced is not None else super().generate_trace_id()

    name = os.environ.get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(resource=Resource.create({"service.name": name}), id_generator=RunSpanIds())
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    return provider


def install(provider: TracerProvider | None, *, set_global: bool = True) -> None:
    """Make `provider` the one this process's spans go to (and OpenTelemetry's global, if still unset);
    None turns tracing off again (a test's in-memory provider, removed after the test)."""
    global _provider
    _provider = provider
    if provider is not None and set_global and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)  # only while nobody has set one


def setup_from_env(service: str) -> TracerProvider | None:
    """Install a provider for the configured exporter, once per process; None when tracing is off."""
    if _provider is not None:
        return _provider
    kind = exporter_from_env()
    if kind is None:
        return None
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        exporter: SpanExporter = ConsoleSpanExporter()
    elif kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        raise ValueError(f"OTEL_TRACES_EXPORTER={kind!r}: only otlp (http/protobuf), console or none")
    install(make_provider(service, exporter))
    return _provider


def provider() -> TracerProvider | None:
    return _provider


def tracer() -> trace.Tracer:
    return (_provider or trace.NoOpTracerProvider()).get_tracer(TRACER_NAME)


def flush() -> None:
    if _provider is not None:
        _provider.force_flush(timeout_millis=5000)


def traceparent() -> str | None:
    """The current span's context as a W3C `traceparent` value (None outside a recorded span)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def tag_current(**attributes: str | int | None) -> None:
    """Set attributes on the current span (the API's request span), e.g. its `request_id`."""
    span = trace.get_current_span()
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key, value)


# --- runs ---------------------------------------------------------------------------------------------
def _run_span_id(run_id: str) -> int:
    return int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:8], "big") or 1


def _trace_id(request_id: str, parent: str | None) -> tuple[int, int | None]:
    """(trace id, parent span id) of a run: the upload's when its traceparent came along, else the request's."""
    if parent:
        ctx = trace.get_current_span(propagate.extract({"traceparent": parent})).get_span_context()
        if ctx.is_valid:
            return ctx.trace_id, ctx.span_id
    digest = request_id.replace("-", "")
    try:
        return int(digest, 16) or 1, None
    except ValueError:
        return int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:16], "big"), None


def _as_parent(trace_id: int, span_id: int) -> otel_context.Context:
    span = NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)))
    return trace.set_span_in_context(span)


@contextmanager
def step_span(step: str, request_id: str, run_id: str, parent: str | None, **attributes) -> Iterator[trace.Span]:
    """A run step's span, child of its run's span; flushed when the step ends."""
    trace_id, _ = _trace_id(request_id, parent)
    attrs = {"request_id": request_id, "run_id": run_id, "step": step, **_known(attributes)}
    try:
        with tracer().start_as_current_span(
            f"step {step}", context=_as_parent(trace_id, _run_span_id(run_id)), attributes=attrs
        ) as span:
            yield span
    finally:
        flush()


def end_run(request_id: str, run_id: str, parent: str | None, started: float | None, status: str) -> None:
    """Emit the run's span (the parent its steps named) from `started` (epoch seconds) to now."""
    trace_id, parent_span = _trace_id(request_id, parent)
    # With the upload's traceparent the run is its child; without it, the root of the request's trace.
    ctx = _as_parent(trace_id, parent_span) if parent_span else otel_context.Context()
    start_ns = int((started or time.time()) * 1e9)
    token = _forced_ids.set((trace_id, _run_span_id(run_id)))
    try:
        span = tracer().start_span(
            "run",
            context=ctx,
            kind=SpanKind.INTERNAL,
            attributes={"request_id": request_id, "run_id": run_id, "status": status},
            start_time=start_ns,
        )
    finally:
        _forced_ids.reset(token)
    span.end()
    flush()


@contextmanager
def span(name: str, **attributes) -> Iterator[trace.Span]:
    """A child of the current span (a chunk, a webhook delivery)."""
    with tracer().start_as_current_span(name, attributes=_known(attributes)) as s:
        yield s


def _known(attributes: dict) -> dict:
    return {k: v for k, v in attributes.items() if v is not None}
