"""Per-URL results of a chunk, written to the database (and the status cache) in batches as they land."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Executor, Future

from image_pipeline.domain.db import requests as repo
from image_pipeline.domain.request.context import RequestContext
from image_pipeline.domain.status import CANCELED

log = logging.getLogger(__name__)


class ProgressRecorder:
    """Collects per-URL results and writes them to the database (and cache) in batches.

    With a `writer` (a one-thread executor) the writes happen there, so the event loop that reports
    results never waits for a database round trip (during which no download would progress); at most
    one write is in flight and results that land meanwhile join the next one.
    """

    def __init__(
        self,
        ctx: RequestContext,
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
        # Set when a write finds the request canceled by its owner: the chunk takes no further URL.
        self.canceled = threading.Event()

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
                doc = self.ctx.publish_status(s, self.request_id)
            if doc is not None and doc["status"] == CANCELED:
                self.canceled.set()
        except OperationalError:
            # The database is away (restart, failover): keep the batch and try again with the next
            # result instead of losing the images already fetched and stored.
            with self._lock:
                self.pending = batch + self.pending
            if final:
                raise
            log.warning("progress of %s not recorded yet (database unavailable); will retry", self.request_id)
