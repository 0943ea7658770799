"""The ops inside `compressed_images`: plan the chunks, one `compress_chunk` step per chunk (fanned out by
the executor, capped by the chunk pool), then the request's summary and its asset checks."""

from collections.abc import Iterator

import dagster as dg

from image_pipeline.defs import checks
from image_pipeline.defs.resources import PipelineParam
from image_pipeline.defs.steps import MAX_ERRORS_SHOWN, SYNC_COUNTS, md_table, run_step, sync_metadata, traced
from image_pipeline.domain.request.chunks import (
    Chunk,
    load_plan,
    load_summary,
    plan_chunks,
    process_chunk,
    score_table,
    store_summary,
)
from image_pipeline.domain.request.context import RequestContext
from image_pipeline.domain.request.finish import request_counts
from image_pipeline.domain.runs import CHUNK_POOL


@dg.op(ins={"start": dg.In(dg.Nothing)}, out=dg.DynamicOut(dict))
@traced
def plan_image_chunks(context: dg.OpExecutionContext, pipeline: PipelineParam):
    """Cut the request into chunks (stored in object storage); one dynamic output per chunk: its key only."""
    ctx = pipeline.context()
    chunks = run_step(context, ctx, plan_chunks, pipeline.settings.chunk_size, pipeline.settings.fanout_threshold)
    context.log.info(f"{len(chunks)} chunk(s), chunk size {pipeline.settings.chunk_size}")
    for chunk in chunks:
        yield dg.DynamicOutput(chunk.as_dict(), mapping_key=f"chunk_{chunk.number:05d}")


@dg.op(
    pool=CHUNK_POOL,
    out=dg.Out(dg.Nothing),
    retry_policy=dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL),
)
@traced
def compress_chunk(context: dg.OpExecutionContext, pipeline: PipelineParam, chunk: dict) -> None:
    """Fetch and recompress one chunk; per-URL results go to the app DB and the chunk's manifest, not to
    Dagster's event log (which grows with chunks, not URLs). A retry skips what is already stored.

    Its summary goes to object storage, not through the IO manager: a Nothing output costs no
    handled-output/loaded-input events, which were most of what a chunk added to the event log."""
    ctx = pipeline.context()
    summary = run_step(context, ctx, lambda c, rid: process_chunk(c, Chunk.from_dict(chunk)))
    store_summary(ctx, chunk["request_id"], summary, context.run_id)
    context.add_output_metadata(
        {
            "urls": summary.total,
            "done": summary.done,
            "failed": summary.failed,
            "skipped_already_stored": summary.skipped,
            "bytes_in": summary.bytes_in,
            "bytes_out": summary.bytes_out,
            "sync_new": summary.new,
            "sync_changed": summary.changed,
            "sync_unchanged": summary.unchanged,
            "encoded": summary.encoded,
            "bytes_not_refetched": summary.bytes_not_refetched,
        }
    )


CHECK_OUTS = {spec.get_python_identifier(): dg.Out(dg.Nothing, is_required=False) for spec in checks.check_specs}


def _run_group(context: dg.OpExecutionContext) -> set[str]:
    """This run and the runs it re-executes (the retries of one run share a run group)."""
    try:
        group = context.instance.get_run_group(context.run_id)
    except Exception:  # invoked outside a stored run
        group = None
    return {r.run_id for r in group[1]} if group else {context.run_id}


def _chunk_summaries(context: dg.OpExecutionContext, ctx: RequestContext) -> Iterator[dict]:
    """Each chunk's summary, as its step in this run (or the run it re-executes) stored it; one in
    memory at a time.

    A run re-executed from failure after crashing between the plan and the chunk steps gets no mapped
    steps (Dagster re-runs only steps that started or failed): such a chunk is processed here, so a
    request never ends with chunks nobody processed (a finished chunk is skipped at once)."""
    group = _run_group(context)
    for chunk in run_step(context, ctx, load_plan):
        summary = load_summary(ctx, chunk)
        if summary is None or summary.get("run_id") not in group:
            context.log.warning(f"chunk {chunk.number} had no chunk step in this run: processing it here")
            summary = run_step(context, ctx, lambda c, rid, m=chunk: process_chunk(c, m)).as_dict()
        yield summary


@dg.op(ins={"chunks_done": dg.In(dg.Nothing)}, out={"result": dg.Out(dg.Nothing), **CHECK_OUTS})
@traced
def summarize_chunks(context: dg.OpExecutionContext, pipeline: PipelineParam):
    """Request-level counts (from the app DB, the source of truth) as the asset's metadata, then the
    asset checks of this partition.

    The asset's value is `Nothing`: `output_csv` reads the manifests from object storage, not this
    output, so there is nothing for an IO manager to store (an S3 write and an event per run saved)."""
    ctx = pipeline.context()
    chunks = skipped = kept_original = 0
    synced = dict.fromkeys(SYNC_COUNTS, 0)
    errors: list[list[str]] = []  # the first few, for the table
    scores: list[dict[str, list[float]]] = []
    for summary in _chunk_summaries(context, ctx):
        chunks += 1
        scores.append(summary.get("scores") or {})
        skipped += summary["skipped"]
        kept_original += summary["kept_original"]
        for name in SYNC_COUNTS:  # summaries stored before the sync memory have none of these
            synced[name] += summary.get(name, 0)
        errors.extend(list(e) for e in summary["errors"][: MAX_ERRORS_SHOWN - len(errors)])
    req = run_step(context, ctx, request_counts)
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
    meta.update(sync_metadata(synced))
    if req.bytes_in:
        meta["ratio"] = dg.MetadataValue.float(round(req.bytes_out / req.bytes_in, 4))
    table = score_table(scores)
    if table:  # SSIMULACRA2 of the scored sample (IMGPIPE_SCORE_EVERY), per rendition
        meta["score_mean"] = dg.MetadataValue.float(table[0][2])  # the first rendition: plotted across requests
        meta["score_min"] = dg.MetadataValue.float(table[0][3])
        rows = [[n, str(c), f"{m:.2f}", f"{lo:.2f}"] for n, c, m, lo in table]
        meta["scores"] = dg.MetadataValue.md(md_table(["rendition", "scored", "mean", "min"], rows))
    if errors:
        meta["errors"] = dg.MetadataValue.md(md_table(["URL", "error"], errors))
    yield dg.Output(None, output_name="result", metadata=meta)
    yield from checks.evaluate(ctx, context.partition_key, pipeline.settings.check_decode_sample)
