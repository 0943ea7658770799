"""The per-request asset chain: validated_csv -> compressed_images -> output_csv -> request_notification.

Each asset calls one domain step (`image_pipeline.domain.request`); `compressed_images` is a graph of the
chunk ops (`chunk_ops`). The domain is imported when the code location loads, which the run launcher's
warm process has done already, so a run starts with nothing left to import.
"""

import dagster as dg

from image_pipeline.defs import checks
from image_pipeline.defs.chunk_ops import CHECK_OUTS, compress_chunk, plan_image_chunks, summarize_chunks
from image_pipeline.defs.partitions import request_partitions_def
from image_pipeline.defs.resources import PipelineParam
from image_pipeline.defs.steps import GROUP, OWNERS, STEP_RETRY, md_table, run_step, traced
from image_pipeline.domain.request.finish import notify, write_output
from image_pipeline.domain.request.validate import validate_request


@dg.asset(
    partitions_def=request_partitions_def,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"csv", "python"},
    code_version="1",
    retry_policy=STEP_RETRY,
)
@traced
def validated_csv(context: dg.AssetExecutionContext, pipeline: PipelineParam) -> dg.MaterializeResult:
    """The request's uploaded CSV, parsed with the API's rules: one row per product with its image URLs."""
    ctx = pipeline.context()
    validated = run_step(context, ctx, validate_request)
    preview = [[r.serial, r.name, len(r.urls), r.urls[0]] for r in validated.preview]
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(validated.rows),
            "urls": dg.MetadataValue.int(validated.urls),
            "preview": dg.MetadataValue.md(md_table(["S.No.", "Product Name", "URLs", "first URL"], preview)),
        }
    )


@dg.graph_asset(
    partitions_def=request_partitions_def,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"s3", "jpeg"},
    ins={"validated_csv": dg.AssetIn(dagster_type=dg.Nothing)},
    code_version="2",
    check_specs=checks.check_specs,
)
def compressed_images(validated_csv):
    """Every input URL downloaded and recompressed to JPEG in object storage; one result per URL.

    A graph: plan -> one `compress_chunk` step per chunk (fanned out by the executor, capped by the
    `image_chunks` pool) -> summary. Small requests are a single chunk."""
    outs = summarize_chunks(plan_image_chunks(validated_csv).map(compress_chunk).collect())
    return {"result": outs.result, **{name: getattr(outs, name) for name in CHECK_OUTS}}


@dg.asset(
    partitions_def=request_partitions_def,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"csv", "s3"},
    deps=[compressed_images],
    code_version="1",
    retry_policy=STEP_RETRY,
)
@traced
def output_csv(context: dg.AssetExecutionContext, pipeline: PipelineParam) -> dg.MaterializeResult:
    """The input columns plus `Output Image Urls`; written last, so its presence means the request is done."""
    ctx = pipeline.context()
    key, status = run_step(context, ctx, write_output)
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
@traced
def request_notification(context: dg.AssetExecutionContext, pipeline: PipelineParam) -> dg.MaterializeResult:
    """The caller's webhook: the final, signed event, queued once and tried now (retries: webhook_retry_sensor)."""
    ctx = pipeline.context()
    sent = notify(ctx, context.partition_key)
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
