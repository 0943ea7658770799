"""The per-request asset chain: validated_csv -> compressed_images -> output_csv -> request_notification.

The domain steps (`image_pipeline.pipeline`, which pulls in the SQLAlchemy ORM, httpx, Pillow ...) are
imported inside the assets, so loading the code location (webserver, daemon, sensors) stays light.
"""

from collections.abc import Iterator
from typing import TYPE_CHECKING

import dagster as dg

from image_pipeline.defs import checks
from image_pipeline.defs.partitions import request_partitions_def
from image_pipeline.defs.resources import ImagePipelineResource

if TYPE_CHECKING:
    from image_pipeline.pipeline import PipelineContext

OWNERS = ["team:image-pipeline"]
CHUNK_POOL = "image_chunks"  # the Dagster pool of compress_chunk steps (limit: dagster.yaml `pools`)
GROUP = "requests"
MAX_ERRORS_SHOWN = 20  # per-URL errors in the asset metadata table (every one is in GET /api/requests/{id}/results)
# A step that hits a transient fault (database restarting, S3 hiccup) is re-run in the same run after
# 2, 4, 8 s (+ jitter); re-running is safe because every step skips what is already stored.
# `RequestFailed` bypasses this (Failure(allow_retries=False)): retrying cannot bring back a lost input.
STEP_RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def _steps():  # noqa: ANN202
    from image_pipeline import pipeline

    return pipeline


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")[:120]

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _run_step(context: dg.AssetExecutionContext, ctx: "PipelineContext", fn, *args):  # noqa: ANN001, ANN202
    """Run a domain step; a request-level failure fails the request (and tells the caller) right here."""

    try:
        return fn(ctx, context.partition_key, *args)
    except _steps().RequestFailed as exc:
        _steps().fail_request(ctx, context.partition_key, str(exc))
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


@dg.asset(
    partitions_def=request_partitions_def,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"csv", "python"},
    code_version="1",
    retry_policy=STEP_RETRY,
)
def validated_csv(context: dg.AssetExecutionContext, pipeline: ImagePipelineResource) -> dg.MaterializeResult:
    """The request's uploaded CSV, parsed with the API's rules: one row per product with its image URLs."""
    ctx = pipeline.context()
    validated = _run_step(context, ctx, _steps().validate_request)
    preview = [[r.serial, r.name, len(r.urls), r.urls[0]] for r in validated.preview]
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(validated.rows),
            "urls": dg.MetadataValue.int(validated.urls),
            "preview": dg.MetadataValue.md(_md_table(["S.No.", "Product Name", "URLs", "first URL"], preview)),
        }
    )


@dg.op(ins={"start": dg.In(dg.Nothing)}, out=dg.DynamicOut(dict))
def plan_image_chunks(context: dg.OpExecutionContext, pipeline: ImagePipelineResource):  # noqa: ANN201
    """Cut the request into chunks (stored in object storage); one dynamic output per chunk: its key only."""
    from image_pipeline.chunks import plan_chunks

    ctx = pipeline.context()
    chunks = _run_step(context, ctx, plan_chunks, pipeline.chunk_size, pipeline.fanout_threshold)
    context.log.info(f"{len(chunks)} chunk(s), chunk size {pipeline.chunk_size}")
    for chunk in chunks:
        yield dg.DynamicOutput(chunk.as_dict(), mapping_key=f"chunk_{chunk.number:05d}")


@dg.op(
    pool=CHUNK_POOL,
    out=dg.Out(dg.Nothing),
    retry_policy=dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL),
)
def compress_chunk(context: dg.OpExecutionContext, pipeline: ImagePipelineResource, chunk: dict) -> None:
    """Fetch and recompress one chunk; per-URL results go to the app DB and the chunk's manifest, not to
    Dagster's event log (which grows with chunks, not URLs). A retry skips what is already stored.

    Its summary goes to object storage, not through the IO manager: a Nothing output costs no
    handled-output/loaded-input events, which were most of what a chunk added to the event log."""
    from image_pipeline.chunks import Chunk, process_chunk, store_summary

    ctx = pipeline.context()
    summary = _run_step(context, ctx, lambda c, rid: process_chunk(c, Chunk.from_dict(chunk)))
    store_summary(ctx, chunk["request_id"], summary, context.run_id)
    context.add_output_metadata(
        {
            "urls": summary.total,
            "done": summary.done,
            "failed": summary.failed,
            "skipped_already_stored": summary.skipped,
            "bytes_in": summary.bytes_in,
            "bytes_out": summary.bytes_out,
        }
    )


_CHECK_OUTS = {spec.get_python_identifier(): dg.Out(dg.Nothing, is_required=False) for spec in checks.check_specs}


def _run_group(context: dg.OpExecutionContext) -> set[str]:
    """This run and the runs it re-executes (the retries of one run share a run group)."""
    try:
        group = context.instance.get_run_group(context.run_id)
    except Exception:  # noqa: BLE001 (invoked outside a stored run)
        group = None
    return {r.run_id for r in group[1]} if group else {context.run_id}


def _chunk_summaries(context: dg.OpExecutionContext, ctx: "PipelineContext") -> Iterator[dict]:
    """Each chunk's summary, as its step in this run (or the run it re-executes) stored it; one in
    memory at a time.

    A run re-executed from failure after crashing between the plan and the chunk steps gets no mapped
    steps (Dagster re-runs only steps that started or failed): such a chunk is processed here, so a
    request never ends with chunks nobody processed (a finished chunk is skipped at once)."""
    from image_pipeline.chunks import load_plan, load_summary, process_chunk

    group = _run_group(context)
    for chunk in _run_step(context, ctx, load_plan):
        summary = load_summary(ctx, chunk)
        if summary is None or summary.get("run_id") not in group:
            context.log.warning(f"chunk {chunk.number} had no chunk step in this run: processing it here")
            summary = _run_step(context, ctx, lambda c, rid, m=chunk: process_chunk(c, m)).as_dict()
        yield summary


@dg.op(ins={"chunks_done": dg.In(dg.Nothing)}, out={"result": dg.Out(dg.Nothing), **_CHECK_OUTS})
def summarize_chunks(context: dg.OpExecutionContext, pipeline: ImagePipelineResource):  # noqa: ANN201
    """Request-level counts (from the app DB, the source of truth) as the asset's metadata, then the
    asset checks of this partition.

    The asset's value is `Nothing`: `output_csv` reads the manifests from object storage, not this
    output, so there is nothing for an IO manager to store (an S3 write and an event per run saved)."""
    ctx = pipeline.context()
    chunks = skipped = kept_original = 0
    errors: list[list[str]] = []  # the first few, for the table
    for summary in _chunk_summaries(context, ctx):
        chunks += 1
        skipped += summary["skipped"]
        kept_original += summary["kept_original"]
        errors.extend(list(e) for e in summary["errors"][: MAX_ERRORS_SHOWN - len(errors)])
    req = _run_step(context, ctx, _steps().request_counts)
    meta = {
        "chunks": dg.MetadataValue.int(chunks),
        "total": dg.MetadataValue.int(req.url_count),
        "done": dg.MetadataValue.int(req.done_count),
        "failed": dg.MetadataValue.int(req.failed_count),
        "skipped_already_stored": dg.MetadataValue.int(skipped),
        "kept_original": dg.MetadataValue.int(kept_original),
        "bytes_in": dg.MetadataValue.int(req.bytes_in),
        "bytes_out": dg.MetadataValue.int(req.bytes_out),
        "bytes_saved": dg.MetadataValue.int(req.bytes_in - req.bytes_out),
    }
    if req.bytes_in:
        meta["ratio"] = dg.MetadataValue.float(round(req.bytes_out / req.bytes_in, 4))
    if errors:
        meta["errors"] = dg.MetadataValue.md(_md_table(["URL", "error"], errors))
    yield dg.Output(None, output_name="result", metadata=meta)
    yield from checks.evaluate(ctx, context.partition_key, pipeline.check_decode_sample)


@dg.graph_asset(
    partitions_def=request_partitions_def,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"s3", "jpeg"},
    ins={"validated_csv": dg.AssetIn(dagster_type=dg.Nothing)},
    code_version="2",
    check_specs=checks.check_specs,
)
def compressed_images(validated_csv):  # noqa: ANN001, ANN201
    """Every input URL downloaded and recompressed to JPEG in object storage; one result per URL.

    A graph: plan -> one `compress_chunk` step per chunk (fanned out by the executor, capped by the
    `image_chunks` pool) -> summary. Small requests are a single chunk."""
    outs = summarize_chunks(plan_image_chunks(validated_csv).map(compress_chunk).collect())
    return {"result": outs.result, **{name: getattr(outs, name) for name in _CHECK_OUTS}}


@dg.asset(
    partitions_def=request_partitions_def,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"csv", "s3"},
    deps=[compressed_images],
    code_version="1",
    retry_policy=STEP_RETRY,
)
def output_csv(context: dg.AssetExecutionContext, pipeline: ImagePipelineResource) -> dg.MaterializeResult:
    """The input columns plus `Output Image Urls`; written last, so its presence means the request is done."""
    ctx = pipeline.context()
    key, status = _run_step(context, ctx, _steps().write_output)
    return dg.MaterializeResult(
        metadata={
            "status": dg.MetadataValue.text(status),
            "object_key": dg.MetadataValue.text(key),
            "output_csv_url": dg.MetadataValue.url(
                f"{ctx.api_base_url}/api/requests/{context.partition_key}/output.csv"
            ),
        }
    )


@dg.asset(
    partitions_def=request_partitions_def,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"webhook"},
    deps=[output_csv],
    code_version="1",
    retry_policy=STEP_RETRY,
)
def request_notification(context: dg.AssetExecutionContext, pipeline: ImagePipelineResource) -> dg.MaterializeResult:
    """The caller's webhook: the final, signed event, queued once and tried now (retries: webhook_retry_sensor)."""
    ctx = pipeline.context()
    sent = _steps().notify(ctx, context.partition_key)
    if sent is None:
        return dg.MaterializeResult(metadata={"delivery": dg.MetadataValue.text("no webhook or already queued")})
    return dg.MaterializeResult(
        metadata={
            "delivery_id": dg.MetadataValue.int(sent.delivery_id),
            "state": dg.MetadataValue.text(sent.state),  # "pending" = the retry sensor takes over
            "http_status": dg.MetadataValue.int(sent.attempt.status_code or 0),
            "error": dg.MetadataValue.text(sent.attempt.error or ""),
            "duration_ms": dg.MetadataValue.int(sent.attempt.duration_ms),
        }
    )


request_assets = [validated_csv, compressed_images, output_csv, request_notification]
