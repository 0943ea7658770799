"""The steps of one request, in plain Python: Dagster assets call these, tests call them directly.

validate -> compress -> write output CSV -> notify. Every step reads its inputs from object storage
or the database by deterministic keys, so a step can be re-run alone and a retried run skips work
that was already stored.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from image_pipeline.csv_input import CsvLimits, ProductRow, parse_csv
from image_pipeline.csv_output import render_output_csv
from image_pipeline.fetch import FetchPolicy
from image_pipeline.processing import ProcessOptions, process_items, work_items
from image_pipeline.storage import ObjectNotFound, ObjectStore, input_key, output_csv_key, rows_key
from image_pipeline.store import requests as repo
from image_pipeline.store.cache import StatusCache
from image_pipeline.store.models import COMPLETED, FAILED, PARTIALLY_FAILED
from image_pipeline.webhooks import Attempt, build_event, deliver_and_record, products_of


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

    def publish_status(self, session: Session, request_id: str) -> dict | None:
        req = repo.get_request(session, request_id)
        if req is None:
            return None
        doc = repo.status_document(req, self.api_base_url)
        self.cache.set(request_id, doc)
        return doc


def load_rows(ctx: PipelineContext, request_id: str) -> list[ProductRow]:
    """The parsed rows of a request (written by `validate_request`)."""
    try:
        raw = ctx.store.get(rows_key(request_id))
    except ObjectNotFound as exc:
        raise RequestFailed(f"parsed rows of request {request_id} are missing from storage") from exc
    return [ProductRow.from_dict(d) for d in json.loads(raw)]


def validate_request(ctx: PipelineContext, request_id: str) -> list[ProductRow]:
    """Parse the stored input CSV with the API's own rules, store the rows, mark the request processing."""
    try:
        data = ctx.store.get(input_key(request_id))
    except ObjectNotFound as exc:
        raise RequestFailed(f"input CSV of request {request_id} is missing from storage") from exc
    parsed = parse_csv(data, ctx.limits)
    if not parsed.ok:
        first = parsed.errors[0]
        raise RequestFailed(f"input CSV is invalid: row {first.row}, {first.column}: {first.message}")
    ctx.store.put(rows_key(request_id), json.dumps([r.as_dict() for r in parsed.rows]).encode(), "application/json")
    with ctx.sessions() as s:
        if repo.get_request(s, request_id) is None:
            raise RequestFailed(f"request {request_id} is not in the database")
        repo.mark_processing(s, request_id, row_count=len(parsed.rows), url_count=parsed.url_count)
        ctx.publish_status(s, request_id)
    return parsed.rows


class ProgressRecorder:
    """Collects per-URL results and writes them to the database (and cache) in batches."""

    def __init__(self, ctx: PipelineContext, request_id: str, *, every_s: float = 0.5, max_batch: int = 200) -> None:
        self.ctx, self.request_id = ctx, request_id
        self.every_s, self.max_batch = every_s, max_batch
        self.pending: list[repo.UrlResult] = []
        self.last = time.monotonic()
        self.done = self.failed = self.bytes_in = self.bytes_out = self.kept = 0
        self._lock = threading.Lock()

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
            if len(self.pending) >= self.max_batch or time.monotonic() - self.last >= self.every_s:
                self._flush()

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        batch, self.pending, self.last = self.pending, [], time.monotonic()
        with self.ctx.sessions() as s:
            repo.record_results(s, self.request_id, batch)
            self.ctx.publish_status(s, self.request_id)


@dataclass
class CompressSummary:
    total: int
    done: int
    failed: int
    skipped: int
    bytes_in: int
    bytes_out: int
    kept_original: int
    errors: list[tuple[str, str]]


def compress_request(
    ctx: PipelineContext, request_id: str, on_progress: Callable[[ProgressRecorder], None] | None = None
) -> CompressSummary:
    """Fetch and recompress every URL not already done; record each outcome. Never raises per URL."""
    rows = load_rows(ctx, request_id)
    with ctx.sessions() as s:
        already = repo.completed_indices(s, request_id)
    # A retried run skips what a previous attempt stored (the object must really be there).
    skip = {i for i, key in already.items() if key and ctx.store.exists(key)}
    del already
    recorder = ProgressRecorder(ctx, request_id)
    errors: list[tuple[str, str]] = []

    def on_result(r: repo.UrlResult) -> None:
        recorder(r)
        if r.status == "failed" and len(errors) < 50:
            errors.append((r.url, r.error or ""))

    asyncio.run(
        process_items(
            work_items(rows, skip),
            request_id=request_id,
            store=ctx.store,
            policy=ctx.policy,
            opts=ctx.options,
            on_result=on_result,
            expected=sum(len(r.urls) for r in rows) - len(skip),
        )
    )
    recorder.flush()
    with ctx.sessions() as s:
        req = repo.get_request(s, request_id)
        assert req is not None
        return CompressSummary(
            total=req.url_count,
            done=req.done_count,
            failed=req.failed_count,
            skipped=len(skip),
            bytes_in=req.bytes_in,
            bytes_out=req.bytes_out,
            kept_original=recorder.kept,
            errors=errors,
        )


def write_output(ctx: PipelineContext, request_id: str) -> tuple[str, str]:
    """Write the output CSV (last, so its presence means the request is complete); set the final status."""
    rows = load_rows(ctx, request_id)
    with ctx.sessions() as s:
        results = repo.result_outcomes(s, request_id)

    def url_of(idx: int) -> str | None:
        r = results.get(idx)
        return ctx.store.public_url(r.output_key) if r and r.status == "done" and r.output_key else None

    key = output_csv_key(request_id)
    ctx.store.put(key, render_output_csv(rows, url_of), "text/csv; charset=utf-8")
    total = sum(len(r.urls) for r in rows)
    done = sum(1 for r in results.values() if r.status == "done")
    status = COMPLETED if done == total else (FAILED if done == 0 else PARTIALLY_FAILED)
    error = None if status == COMPLETED else f"{total - done} of {total} images failed"
    with ctx.sessions() as s:
        repo.finish(s, request_id, status, output_csv_key=key, error=error)
        ctx.publish_status(s, request_id)
    return key, status


def notify(ctx: PipelineContext, request_id: str) -> Attempt | None:
    """Send the request's final event once (whoever claims it first: the run or the failure sensor)."""
    with ctx.sessions() as s:
        req = repo.get_request(s, request_id)
        if req is None or not repo.claim_final_event(s, request_id):
            return None
        products = None
        try:
            rows = load_rows(ctx, request_id)
            results = repo.result_outcomes(s, request_id)
            products = products_of(rows, results, ctx.store.public_url)
        except RequestFailed:
            pass  # a request that failed before parsing has no products to report
        event = build_event(req, products, ctx.api_base_url)
        return deliver_and_record(s, req, event, ctx.webhook_secret, ctx.policy)


def fail_request(ctx: PipelineContext, request_id: str, reason: str) -> Attempt | None:
    """Mark a request failed (unless already final) and send its final event."""
    with ctx.sessions() as s:
        repo.fail_unless_final(s, request_id, reason)
        ctx.publish_status(s, request_id)
    return notify(ctx, request_id)
