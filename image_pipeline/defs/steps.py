"""What every request step shares: how a domain step runs inside Dagster, its telemetry (a span and a
logging context per step), the retry policy, the metadata table."""

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dagster as dg
from dagster._core.errors import DagsterInvalidPropertyError

from image_pipeline.domain.request.context import RequestCanceled, RequestContext, RequestFailed
from image_pipeline.domain.runs import OWNER_TAG, REQUEST_ID_TAG, TRACEPARENT_TAG
from image_pipeline.domain.settings import get_settings
from image_pipeline.domain.telemetry import tracing
from image_pipeline.domain.telemetry.logs import configure_logging, log_context

LAST_STEP = "request_notification"  # the step whose end is the end of the run's span

OWNERS = ["team:image-pipeline"]
GROUP = "requests"
MAX_ERRORS_SHOWN = 20  # per-URL errors in the asset metadata table (every one is in GET /api/requests/{id}/results)
# A step that hits a transient fault (database restarting, S3 hiccup) is re-run in the same run after
# 2, 4, 8 s (+ jitter); re-running is safe because every step skips what is already stored.
# `RequestFailed` bypasses this (Failure(allow_retries=False)): retrying cannot bring back a lost input.
STEP_RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def md_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")[:120]

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def run_step(context: dg.OpExecutionContext, ctx: RequestContext, fn, *args):
    """Run a domain step; a request-level failure fails the request (and tells the caller) right here."""
    from image_pipeline.domain.request.finish import fail_request

    try:
        return fn(ctx, context.partition_key, *args)
    except RequestFailed as exc:
        fail_request(ctx, context.partition_key, str(exc))
        _end_run(context, "canceled" if isinstance(exc, RequestCanceled) else "failed")
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


def traced(fn: Callable) -> Callable:
    """Decorate an op or asset body (under its Dagster decorator): it runs in a span `step <name>` of its
    run's trace and in a logging context with its request, run and tenant (see domain.telemetry)."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(context, *args, **kwargs):
            with _step_telemetry(context, kwargs.get("pipeline")):
                yield from fn(context, *args, **kwargs)

        return generator

    @functools.wraps(fn)
    def plain(context, *args, **kwargs):
        with _step_telemetry(context, kwargs.get("pipeline")):
            return fn(context, *args, **kwargs)

    return plain


@contextmanager
def _step_telemetry(context, pipeline) -> Iterator[None]:
    settings = pipeline.settings if pipeline is not None else get_settings()
    configure_logging(settings.log_format)
    tracing.setup_from_env("image-pipeline-run")
    tags = _run_tags(context)
    request_id = context.partition_key if context.has_partition_key else tags.get(REQUEST_ID_TAG, "")
    step = context.op_def.name
    with (
        log_context(request_id=request_id, run_id=context.run_id, tenant=tags.get(OWNER_TAG)),
        tracing.step_span(step, request_id, context.run_id, tags.get(TRACEPARENT_TAG), tenant=tags.get(OWNER_TAG)),
    ):
        yield
    if step == LAST_STEP:
        _end_run(context, "success")


def _run_tags(context) -> dict[str, str]:
    try:
        return dict(context.run.tags)
    except DagsterInvalidPropertyError:  # an op invoked directly (tests): no run
        return {}


def _end_run(context, status: str) -> None:
    """The run's span, from the run's start to now (its steps are its children: domain.telemetry.tracing)."""
    if tracing.provider() is None:
        return
    try:
        started = context.instance.get_run_stats(context.run_id).start_time
    except Exception:  # a step invoked outside a stored run
        started = None
    tags = _run_tags(context)
    request_id = context.partition_key if context.has_partition_key else tags.get(REQUEST_ID_TAG, "")
    tracing.end_run(request_id, context.run_id, tags.get(TRACEPARENT_TAG), started, status)


# The sync memory's per-request counts (docs/sync.md), summed over the chunk summaries.
SYNC_COUNTS = ("new", "changed", "unchanged", "encoded", "bytes_not_refetched", "validators_ignored")


def sync_metadata(counts: dict[str, int]) -> dict[str, dg.MetadataValue]:
    """`compressed_images` metadata: URLs new/changed/unchanged for the tenant, how many were encoded,
    the bytes a 304 (or an in-request duplicate) spared downloading, and URLs whose origin ignores validators."""
    return {f"sync_{name}": dg.MetadataValue.int(counts.get(name, 0)) for name in SYNC_COUNTS}
