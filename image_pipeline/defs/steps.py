"""What every request step shares: how a domain step runs inside Dagster, the retry policy, the metadata table."""

import dagster as dg

from image_pipeline.domain.request.context import RequestContext, RequestFailed

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
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


# The sync memory's per-request counts (docs/sync.md), summed over the chunk summaries.
SYNC_COUNTS = ("new", "changed", "unchanged", "encoded", "bytes_not_refetched", "validators_ignored")


def sync_metadata(counts: dict[str, int]) -> dict[str, dg.MetadataValue]:
    """`compressed_images` metadata: URLs new/changed/unchanged for the tenant, how many were encoded,
    the bytes a 304 (or an in-request duplicate) spared downloading, and URLs whose origin ignores validators."""
    return {f"sync_{name}": dg.MetadataValue.int(counts.get(name, 0)) for name in SYNC_COUNTS}
