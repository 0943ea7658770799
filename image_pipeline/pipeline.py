"""The steps of one request, in plain Python: Dagster assets call these, tests call them directly.

validate -> compress -> write output CSV -> notify. Every step reads its inputs from object storage
or the database by deterministic keys, so a step can be re-run alone and a retried run skips work
that was already stored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from image_pipeline.csv_input import CsvLimits, ProductRow, parse_csv
from image_pipeline.csv_output import write_output_csv
from image_pipeline.fetch import FetchPolicy
from image_pipeline.processing import ProcessOptions
from image_pipeline.rows import RowsMissing, open_rows, write_row
from image_pipeline.storage import ObjectNotFound, ObjectStore, input_key, output_csv_key, rows_key
from image_pipeline.store import requests as repo
from image_pipeline.store.cache import StatusCache
from image_pipeline.store.models import COMPLETED, FAILED, PARTIALLY_FAILED
from image_pipeline.webhook_delivery import RetryPolicy, SentAttempt, enqueue_final_event, send_deliveries
from image_pipeline.webhooks import EventLimits

log = logging.getLogger(__name__)


class RequestFailed(Exception):
    """The request as a whole cannot be processed (e.g. its input vanished); the reason is user-facing."""


@dataclass
class PipelineContext:
    """Everything a step needs; built from Dagster resources or directly in tests."""

    sessions: sessionmaker[Session]
    store: ObjectStore
    cache: StatusCache
    policy: FetchPolicy
    options: ProcessOptions
    limits: CsvLimits
    api_base_url: str
    webhook_secret: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    event_limits: EventLimits = field(default_factory=EventLimits)

    def publish_status(self, session: Session, request_id: str) -> dict | None:
        req = repo.get_request(session, request_id)
        if req is None:
            return None
        doc = repo.status_document(req, self.api_base_url)
        self.cache.set(request_id, doc)
        return doc


def iter_rows(ctx: PipelineContext, request_id: str) -> Iterator[ProductRow]:
    """The parsed rows of a request (written by `validate_request`), read lazily in input order."""
    try:
        return open_rows(ctx.store, request_id)
    except RowsMissing as exc:
        raise RequestFailed(f"parsed rows of request {request_id} are missing from storage") from exc


@dataclass(frozen=True)
class Validated:
    """What `validate_request` found: counts and the first rows (the asset's preview), not every row."""

    rows: int
    urls: int
    preview: list[ProductRow]


PREVIEW_ROWS = 10


def validate_request(ctx: PipelineContext, request_id: str) -> Validated:
    """Parse the stored input CSV with the API's own rules, store the rows (JSON lines, streamed to storage
    as they are parsed: a refused file leaves none), mark the request processing."""
    try:
        data = ctx.store.get(input_key(request_id))
    except ObjectNotFound as exc:
        raise RequestFailed(f"input CSV of request {request_id} is missing from storage") from exc
    preview: list[ProductRow] = []

    with ctx.store.open_writer(rows_key(request_id), "application/x-ndjson") as out:

        def keep(row: ProductRow) -> None:
            write_row(out, row)
            if len(preview) < PREVIEW_ROWS:
                preview.append(row)

        parsed = parse_csv(data, ctx.limits, on_row=keep)
        del data
        if not parsed.ok:
            first = parsed.errors[0]
            raise RequestFailed(f"input CSV is invalid: row {first.row}, {first.column}: {first.message}")
    with ctx.sessions() as s:
        if repo.get_request(s, request_id) is None:
            raise RequestFailed(f"request {request_id} is not in the database")
        repo.mark_processing(s, request_id, row_count=parsed.row_count, url_count=parsed.url_count)
        ctx.publish_status(s, request_id)
    return Validated(parsed.row_count, parsed.url_count, preview)


class ProgressRecorder:
    """Collects per-URL results and writes them to the database (and cache) in batches.

    With a `writer` (a one-thread executor) the writes happen there, so the event loop that reports
    results never waits for a database round trip (tens of ms on PostgreSQL, during which no download
    would progress); at most one write is in flight and results that land meanwhile join the next one.
    """

    def __init__(
        self,
        ctx: PipelineContext,
        request_id: str,
        *,
        every_s: float = 0.5,
        max_batch: int = 200,
        writer: Executor | None = None,
    ) -> None:
        self.ctx, self.request_id = ctx, request_id
        self.every_s, self.max_batch = every_s, max_batch
        self.writer = writer
        self.pending: list[repo.UrlResult] = []
        self.last = time.monotonic()
        self.done = self.failed = self.bytes_in = self.bytes_out = self.kept = 0
        self._lock = threading.Lock()
        self._inflight: Future | None = None

    def __call__(self, result: repo.UrlResult) -> None:
        with self._lock:
            self.pending.append(result)
            if result.status == "done":
                self.done += 1
                self.bytes_in += result.bytes_in or 0
                self.bytes_out += result.bytes_out or 0
                self.kept += result.kept_original
            else:
                self.failed += 1
            due = len(self.pending) >= self.max_batch or time.monotonic() - self.last >= self.every_s
            if not due or (self._inflight is not None and not self._inflight.done()):
                return
            self.last = time.monotonic()
            if self.writer is not None:
                self._inflight = self.writer.submit(self._write_pending)
                return
        self._write_pending()

    def flush(self) -> None:
        """Write what is left; raises if the database is still unreachable (the step's retry policy
        then re-runs the step, which skips every image already recorded)."""
        inflight = self._inflight
        if inflight is not None:
            inflight.result()  # a background write finishes first (and re-queues its batch on failure)
        self._write_pending(final=True)

    def _write_pending(self, final: bool = False) -> None:
        from sqlalchemy.exc import OperationalError

        with self._lock:
            batch, self.pending = self.pending, []
        if not batch and not final:
            return
        try:
            with self.ctx.sessions() as s:
                repo.record_results(s, self.request_id, batch)
                self.ctx.publish_status(s, self.request_id)
        except OperationalError:
            # The database is away (restart, failover): keep the batch and try again with the next
            # result instead of losing the images already fetched and stored.
            with self._lock:
                self.pending = batch + self.pending
            if final:
                raise
            log.warning("progress of %s not recorded yet (database unavailable); will retry", self.request_id)


def request_counts(ctx: PipelineContext, request_id: str):  # noqa: ANN201 (ImageRequest)
    """The request row with its counters (done, failed, bytes in/out), detached from the session."""
    with ctx.sessions() as s:
        req = repo.get_request(s, request_id)
        if req is None:
            raise RequestFailed(f"request {request_id} is not in the database")
        s.expunge(req)
        return req


def write_output(ctx: PipelineContext, request_id: str) -> tuple[str, str]:
    """Write the output CSV from the parsed rows and the chunk manifests, streamed to storage in input
    order: one row and one manifest in memory at a time, uploaded in parts as it is produced (written
    last, so its presence means the request is complete); set the final status."""
    from image_pipeline.chunks import iter_manifest_results, load_plan

    rows = iter_rows(ctx, request_id)
    results = iter_manifest_results(ctx, load_plan(ctx, request_id))
    done = total = 0

    def url_of(idx: int) -> str | None:  # called once per URL, in input order
        nonlocal done, total
        total += 1
        r = next(results, None)
        if r is None:
            raise RequestFailed(f"chunk manifests end before URL {idx}")
        if r["idx"] != idx:
            raise RequestFailed(f"chunk manifests are out of order at URL {idx} (found {r['idx']})")
        if r["status"] == "done" and r["output_key"]:
            done += 1
            return ctx.store.public_url(r["output_key"])
        return None

    key = output_csv_key(request_id)
    with ctx.store.open_writer(key, "text/csv; charset=utf-8") as out:
        write_output_csv(rows, url_of, out.write)
    status = COMPLETED if done == total else (FAILED if done == 0 else PARTIALLY_FAILED)
    error = None if status == COMPLETED else f"{total - done} of {total} images failed"
    with ctx.sessions() as s:
        repo.finish(s, request_id, status, output_csv_key=key, error=error)
        ctx.publish_status(s, request_id)
    return key, status


def notify(ctx: PipelineContext, request_id: str) -> SentAttempt | None:
    """Queue the request's final event once (whoever claims it first: the run or the failure sensor) and
    make the first delivery attempt now; later attempts are the retry sensor's (see webhook_delivery)."""
    with ctx.sessions() as s:
        delivery_id = enqueue_final_event(s, ctx.store, request_id, ctx.api_base_url, ctx.event_limits)
    if delivery_id is None:
        return None
    sent = send_deliveries(
        ctx.sessions, [delivery_id], secret=ctx.webhook_secret, fetch_policy=ctx.policy, policy=ctx.retry
    )
    return sent[0] if sent else None


def fail_request(ctx: PipelineContext, request_id: str, reason: str) -> SentAttempt | None:
    """Mark a request failed (unless already final) and send its final event."""
    with ctx.sessions() as s:
        repo.fail_unless_final(s, request_id, reason)
        ctx.publish_status(s, request_id)
    return notify(ctx, request_id)
