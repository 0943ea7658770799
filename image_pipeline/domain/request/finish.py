"""The end of a request's run: the output CSV (streamed, written last), the final status, the webhook."""

from __future__ import annotations

import logging

from image_pipeline.domain.catalog.csv_output import write_output_csv
from image_pipeline.domain.catalog.manifest import ManifestWriter
from image_pipeline.domain.clock import as_utc, utcnow
from image_pipeline.domain.db import requests as repo
from image_pipeline.domain.db.models import ImageRequest
from image_pipeline.domain.keys import manifest_key, output_csv_key
from image_pipeline.domain.profiles import profile_from_json
from image_pipeline.domain.request.chunks import iter_manifest_results, load_plan
from image_pipeline.domain.request.context import RequestContext, RequestFailed, iter_rows
from image_pipeline.domain.status import COMPLETED, final_status, is_final
from image_pipeline.domain.telemetry.metrics import record_request_end
from image_pipeline.domain.webhooks.delivery import SentAttempt, send_deliveries
from image_pipeline.domain.webhooks.outbox import enqueue_final_event

log = logging.getLogger(__name__)


def request_counts(ctx: RequestContext, request_id: str) -> ImageRequest:
    """The request row with its counters (done, failed, bytes in/out), detached from the session."""
    with ctx.sessions() as s:
        req = repo.get_request(s, request_id)
        if req is None:
            raise RequestFailed(f"request {request_id} is not in the database")
        s.expunge(req)
        return req


def write_output(ctx: RequestContext, request_id: str) -> tuple[str, str]:
    """Write the output CSV from the parsed rows and the chunk manifests, streamed to storage in input
    order: one row and one manifest in memory at a time, uploaded in parts as it is produced (written
    last, so its presence means the request is complete); set the final status."""
    ctx.stop_if_canceled(request_id)
    rows = iter_rows(ctx, request_id)
    results = iter_manifest_results(ctx, load_plan(ctx, request_id))
    before = request_counts(ctx, request_id)
    profile = profile_from_json(before.profile)
    further = [r.name for r in profile.renditions[1:]] if profile else []
    done = total = 0
    current: dict = {}

    def url_of(idx: int) -> str | None:  # called once per URL, in input order
        nonlocal done, total, current
        total += 1
        r = next(results, None)
        if r is None:
            raise RequestFailed(f"chunk manifests end before URL {idx}")
        if r["idx"] != idx:
            raise RequestFailed(f"chunk manifests are out of order at URL {idx} (found {r['idx']})")
        current = r
        manifest.add(r)
        if r["status"] == "done" and r["output_key"]:
            done += 1
            return ctx.store.public_url(r["output_key"])
        return None

    def rendition_urls(idx: int) -> list[str | None]:  # the further renditions of `current` (URL idx)
        made = {m["name"]: m["key"] for m in (current.get("renditions") or [])}
        return [ctx.store.public_url(made[n]) if n in made else None for n in further]

    key = output_csv_key(request_id)
    # The CSV is opened first so that it closes last: its presence still means the request is complete.
    with (
        ctx.store.open_writer(key, "text/csv; charset=utf-8") as out,
        ctx.store.open_writer(manifest_key(request_id), "application/json") as manifest_out,
    ):
        manifest = ManifestWriter(manifest_out.write, ctx.store.public_url, profile, ctx.options.quality)
        manifest.start(request_id)
        write_output_csv(
            rows,
            url_of,
            out.write,
            renditions=further,
            rendition_urls=rendition_urls,
            sync_status=(lambda idx: current.get("sync_status")) if ctx.options.sync_memory else None,
        )
        manifest.finish()
    status = final_status(done, total)
    error = None if status == COMPLETED else f"{total - done} of {total} images failed"
    with ctx.sessions() as s:
        repo.finish(s, request_id, status, output_csv_key=key, error=error)
        ctx.publish_status(s, request_id)
    if not is_final(before.status):  # its first end; a re-run of a finished request is not timed again
        _record_duration(before, status)
    log.info("request %s: %s, %d of %d images done", request_id, status, done, total)
    return key, status


def _record_duration(req: ImageRequest, status: str) -> None:
    record_request_end(status, (utcnow() - as_utc(req.created_at)).total_seconds())


def notify(ctx: RequestContext, request_id: str, rerun_error: str | None = None) -> SentAttempt | None:
    """Queue the request's final event once, or the `request.updated` event of the re-run that ends
    (whoever claims it first: the run or the failure sensor), and make the first delivery attempt now;
    later attempts are the retry sensor's (see webhooks.delivery)."""
    with ctx.sessions() as s:
        delivery_id = enqueue_final_event(
            s, ctx.store, request_id, ctx.api_base_url, ctx.event_limits, rerun_error=rerun_error
        )
    if delivery_id is None:
        return None
    sent = send_deliveries(
        ctx.sessions, [delivery_id], secret=ctx.webhook_secret, fetch_policy=ctx.policy, policy=ctx.retry
    )
    return sent[0] if sent else None


def fail_request(ctx: RequestContext, request_id: str, reason: str) -> SentAttempt | None:
    """Mark a request failed (unless already final: a failed re-run leaves the outcome of the run before
    it) and send its final event, or the re-run's `request.updated` event with `reason` as its `rerun_error`."""
    with ctx.sessions() as s:
        failed_now = repo.fail_unless_final(s, request_id, reason)
        ctx.publish_status(s, request_id)
    if failed_now:
        _record_duration(request_counts(ctx, request_id), "failed")
    return notify(ctx, request_id, rerun_error=reason)
