"""The per-request asset chain: validated_csv -> compressed_images -> output_csv -> request_notification.

The domain steps (`image_pipeline.pipeline`, which pulls in the SQLAlchemy ORM, httpx, Pillow ...) are
imported inside the assets, so loading the code location (webserver, daemon, sensors) stays light.
"""

from typing import TYPE_CHECKING

import dagster as dg

from image_pipeline.defs.partitions import request_partitions_def
from image_pipeline.defs.resources import ImagePipelineResource

if TYPE_CHECKING:
    from image_pipeline.pipeline import PipelineContext

OWNERS = ["team:image-pipeline"]
GROUP = "requests"


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
    from image_pipeline import pipeline as steps

    try:
        return fn(ctx, context.partition_key, *args)
    except steps.RequestFailed as exc:
        steps.fail_request(ctx, context.partition_key, str(exc))
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


@dg.asset(
    partitions_def=request_partitions_def, group_name=GROUP, owners=OWNERS, kinds={"csv", "python"}, code_version="1"
)
def validated_csv(context: dg.AssetExecutionContext, pipeline: ImagePipelineResource) -> dg.MaterializeResult:
    """The request's uploaded CSV, parsed with the API's rules: one row per product with its image URLs."""
    ctx = pipeline.context()
    rows = _run_step(context, ctx, _steps().validate_request)
    preview = [[r.serial, r.name, len(r.urls), r.urls[0]] for r in rows[:10]]
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(len(rows)),
            "urls": dg.MetadataValue.int(sum(len(r.urls) for r in rows)),
            "preview": dg.MetadataValue.md(_md_table(["S.No.", "Product Name", "URLs", "first URL"], preview)),
        }
    )


@dg.asset(
    partitions_def=request_partitions_def,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"s3", "jpeg"},
    deps=[validated_csv],
    code_version="1",
)
def compressed_images(context: dg.AssetExecutionContext, pipeline: ImagePipelineResource) -> dg.MaterializeResult:
    """Every input URL downloaded and recompressed to JPEG in object storage; one result per URL."""
    ctx = pipeline.context()
    summary = _run_step(context, ctx, _steps().compress_request)
    ratio = summary.bytes_out / summary.bytes_in if summary.bytes_in else None
    meta = {
        "total": dg.MetadataValue.int(summary.total),
        "done": dg.MetadataValue.int(summary.done),
        "failed": dg.MetadataValue.int(summary.failed),
        "skipped_already_stored": dg.MetadataValue.int(summary.skipped),
        "kept_original": dg.MetadataValue.int(summary.kept_original),
        "bytes_in": dg.MetadataValue.int(summary.bytes_in),
        "bytes_out": dg.MetadataValue.int(summary.bytes_out),
        "bytes_saved": dg.MetadataValue.int(summary.bytes_in - summary.bytes_out),
    }
    if ratio is not None:
        meta["ratio"] = dg.MetadataValue.float(round(ratio, 4))
    if summary.errors:
        meta["errors"] = dg.MetadataValue.md(_md_table(["URL", "error"], [list(e) for e in summary.errors[:20]]))
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    partitions_def=request_partitions_def,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"csv", "s3"},
    deps=[compressed_images],
    code_version="1",
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
)
def request_notification(context: dg.AssetExecutionContext, pipeline: ImagePipelineResource) -> dg.MaterializeResult:
    """The caller's webhook: the request's final, signed event (sent once; every attempt is logged)."""
    ctx = pipeline.context()
    attempt = _steps().notify(ctx, context.partition_key)
    if attempt is None:
        return dg.MaterializeResult(metadata={"delivery": dg.MetadataValue.text("no webhook or already sent")})
    return dg.MaterializeResult(
        metadata={
            "delivered": dg.MetadataValue.bool(attempt.delivered),
            "http_status": dg.MetadataValue.int(attempt.status_code or 0),
            "error": dg.MetadataValue.text(attempt.error or ""),
            "duration_ms": dg.MetadataValue.int(attempt.duration_ms),
        }
    )


request_assets = [validated_csv, compressed_images, output_csv, request_notification]
