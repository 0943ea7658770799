"""Reads and writes of requests and per-URL results. Plain functions over a SQLAlchemy Session."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.orm import Session

from image_pipeline.domain.clock import as_utc, utcnow
from image_pipeline.domain.db.models import ImageRequest, ImageResult
from image_pipeline.domain.status import CANCELABLE_STATUSES, CANCELED, FAILED, FINAL_STATUSES, PENDING, PROCESSING


@dataclass(frozen=True)
class UrlResult:
    """Outcome of one URL as the pipeline reports it."""

    idx: int
    row: int
    url: str
    status: str  # "done" | "failed"
    error: str | None = None
    bytes_in: int | None = None
    bytes_out: int | None = None
    width: int | None = None
    height: int | None = None
    output_key: str | None = None
    kept_original: bool = False
    # Every rendition made, in profile order (a profile's request); None for the seed's one JPEG.
    renditions: list[dict] | None = None
    score: float | None = None  # SSIMULACRA2 of the first output, on sampled URLs (IMGPIPE_SCORE_EVERY)
    # A failed URL's class (domain.images.failures.FAILURE_CLASSES); None when done.
    failure_class: str | None = None

    def as_dict(self) -> dict:
        return self.__dict__.copy()

    def as_row(self) -> dict:
        """The columns of its `image_results` row (renditions as JSON text)."""
        d = self.as_dict()
        d["renditions"] = json.dumps(self.renditions, separators=(",", ":")) if self.renditions else None
        return d

    @classmethod
    def from_row(cls, r: ImageResult) -> UrlResult:
        values = {f: getattr(r, f) for f in cls.__dataclass_fields__}
        values["renditions"] = json.loads(values["renditions"]) if values["renditions"] else None
        return cls(**values)


def create_request(
    session: Session,
    *,
    request_id: str,
    owner: str,
    input_key: str,
    webhook_url: str | None,
    filename: str | None,
    row_count: int,
    url_count: int,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    profile: str | None = None,
) -> ImageRequest:
    """Insert a pending request. With an `idempotency_key` already used by `owner`, the unique constraint
    raises `sqlalchemy.exc.IntegrityError` (the caller rolls back and answers with the original)."""
    req = ImageRequest(
        id=request_id,
        owner=owner,
        input_key=input_key,
        webhook_url=webhook_url,
        filename=filename,
        row_count=row_count,
        url_count=url_count,
        status=PENDING,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        profile=profile,
    )
    session.add(req)
    session.commit()
    return req


def get_request(session: Session, request_id: str, owner: str | None = None) -> ImageRequest | None:
    q = select(ImageRequest).where(ImageRequest.id == request_id)
    if owner is not None:
        q = q.where(ImageRequest.owner == owner)
    return session.scalars(q).first()


def find_by_idempotency_key(
    session: Session, owner: str, key: str, window_s: float, now: datetime | None = None
) -> ImageRequest | None:
    """The owner's request made with `key` within the window. An older one gives its key up (so the key
    can be used again) in a conditional UPDATE that racing callers can all run safely."""
    req = session.scalars(
        select(ImageRequest).where(ImageRequest.owner == owner, ImageRequest.idempotency_key == key)
    ).first()
    if req is None:
        return None
    created = as_utc(req.created_at)
    if created >= (now or utcnow()) - timedelta(seconds=window_s):
        return req
    session.execute(update(ImageRequest).where(ImageRequest.id == req.id).values(idempotency_key=None))
    session.commit()
    return None


def pending_requests(
    session: Session, limit: int = 500, claimable_after_s: float | None = None
) -> Sequence[ImageRequest]:
    """Requests not yet picked up by a run, oldest first (indexed on status, seq).

    With `claimable_after_s`, only those a launcher may claim now (unclaimed, or claimed longer ago than
    that): requests whose claim is fresh (being launched, or re-offered a moment ago while their run
    waits in the queue) do not take the places of newer ones, however many there are.
    """
    q = select(ImageRequest).where(ImageRequest.status == PENDING)
    if claimable_after_s is not None:
        stale = utcnow() - timedelta(seconds=claimable_after_s)
        q = q.where(or_(ImageRequest.launch_claimed_at.is_(None), ImageRequest.launch_claimed_at < stale))
    return session.scalars(q.order_by(ImageRequest.seq).limit(limit)).all()


def claim_launches(session: Session, request_ids: Sequence[str], stale_after_s: float) -> list[str]:
    """Atomically claim the right to launch the run of each pending request; returns the ids won.

    One UPDATE per call: a request is won when it is still pending and unclaimed, or its claim is older
    than `stale_after_s` (the claimer died or its launch failed without releasing). The API fast path
    and the upload sensor both claim before launching, so only one of them launches; the sensor's
    re-offer of stale claims is the safety net (and Dagster's run-key check stops a second run then).
    """
    if not request_ids:
        return []
    now = utcnow()
    res = session.execute(
        update(ImageRequest)
        .where(
            ImageRequest.id.in_(list(request_ids)),
            ImageRequest.status == PENDING,
            or_(
                ImageRequest.launch_claimed_at.is_(None),
                ImageRequest.launch_claimed_at < now - timedelta(seconds=stale_after_s),
            ),
        )
        .values(launch_claimed_at=now)
        .returning(ImageRequest.id)
        .execution_options(synchronize_session=False)
    )
    won = [row[0] for row in res]
    session.commit()
    return won


def release_launch(session: Session, request_id: str) -> None:
    """Give a claim back (the launch failed) so the sensor picks the request up on its next tick."""
    session.execute(
        update(ImageRequest)
        .where(ImageRequest.id == request_id, ImageRequest.status == PENDING)
        .values(launch_claimed_at=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def open_rerun(session: Session, request_id: str) -> bool:
    """A run starts on a request whose final event was already queued (a re-run: retry schedule,
    backfill, a duplicate run): mark a re-run under way, so that its end queues one `request.updated`
    event. Idempotent while one is open (a step or run retry of the same re-run); True when this call
    opened one. Called before anything of the run can fail, so a re-run that fails at once is told too."""
    res = session.execute(
        update(ImageRequest)
        .where(
            ImageRequest.id == request_id,
            ImageRequest.final_event_sent.is_(True),
            ImageRequest.rerun_open.is_(False),
        )
        .values(rerun_open=True, reruns=ImageRequest.reruns + 1, updated_at=utcnow())
    )
    session.commit()
    return bool(res.rowcount)


def mark_processing(session: Session, request_id: str, *, row_count: int, url_count: int) -> None:
    """The run parsed the request: `processing`, unless the request already has a final status (a
    re-run), which it keeps, with its error, until the re-run ends with a new one."""
    final = ImageRequest.status.in_(FINAL_STATUSES)
    session.execute(
        update(ImageRequest)
        .where(ImageRequest.id == request_id)
        .values(
            status=case((final, ImageRequest.status), else_=PROCESSING),
            error=case((final, ImageRequest.error), else_=None),
            row_count=row_count,
            url_count=url_count,
            updated_at=utcnow(),
        )
    )
    session.commit()


def completed_indices(
    session: Session, request_id: str, start: int = 0, stop: int | None = None
) -> dict[int, ImageResult]:
    """Results already recorded as done for URL indices `start` .. `stop - 1` (a retry skips them)."""
    q = select(ImageResult).where(
        ImageResult.request_id == request_id, ImageResult.status == "done", ImageResult.idx >= start
    )
    if stop is not None:
        q = q.where(ImageResult.idx < stop)
    rows = session.scalars(q).all()
    return {r.idx: r for r in rows}


def _counts(rows: Iterable) -> tuple[int, int, int, int]:
    done = failed = b_in = b_out = 0
    for status, bytes_in, bytes_out in rows:
        if status == "done":
            done, b_in, b_out = done + 1, b_in + (bytes_in or 0), b_out + (bytes_out or 0)
        else:
            failed += 1
    return done, failed, b_in, b_out


def record_results(session: Session, request_id: str, results: Iterable[UrlResult]) -> None:
    """Upsert a batch of per-URL results and move the request's counters by the batch's difference.

    O(batch), not O(request): the counters are not re-aggregated over every result of the request on
    each flush (which made a 100,000-URL request quadratic). A URL recorded again (a retried run)
    first takes its previous outcome off the counters.
    """
    batch = [dict(r.as_row(), request_id=request_id, updated_at=utcnow()) for r in results]
    if not batch:
        return
    idxs = [b["idx"] for b in batch]
    before = session.execute(
        select(ImageResult.status, ImageResult.bytes_in, ImageResult.bytes_out).where(
            ImageResult.request_id == request_id, ImageResult.idx.in_(idxs)
        )
    ).all()
    # One statement per dialect, executed with the batch as parameters (executemany): SQLAlchemy compiles
    # it once and caches it, where a multi-VALUES literal of N rows was compiled afresh on every flush.
    session.execute(_upsert_results(session.get_bind().dialect.name), batch)
    new = _counts((b["status"], b["bytes_in"], b["bytes_out"]) for b in batch)
    old = _counts(before)
    d_done, d_failed, d_in, d_out = (n - o for n, o in zip(new, old, strict=True))
    session.execute(
        update(ImageRequest)
        .where(ImageRequest.id == request_id)
        .values(
            done_count=ImageRequest.done_count + d_done,
            failed_count=ImageRequest.failed_count + d_failed,
            bytes_in=ImageRequest.bytes_in + d_in,
            bytes_out=ImageRequest.bytes_out + d_out,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()


@functools.cache
def _upsert_results(dialect: str):  # an Insert construct
    """INSERT ... ON CONFLICT (request_id, idx) DO UPDATE of one per-URL result (built once per dialect)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(ImageResult)
    updated = [f for f in UrlResult.__dataclass_fields__ if f != "idx"] + ["updated_at"]
    cols = {c: stmt.excluded[c] for c in updated}
    return stmt.on_conflict_do_update(index_elements=["request_id", "idx"], set_=cols)


class OrderedOutcomes:
    """idx -> (idx, status, output_key, error, failure_class) of a request's results, read in index order in batches: a
    cursor, not a dict of the whole request, so `get` must be asked for ascending indices."""

    def __init__(self, session: Session, request_id: str, batch: int = 5000) -> None:
        q = (
            select(
                ImageResult.idx,
                ImageResult.status,
                ImageResult.output_key,
                ImageResult.error,
                ImageResult.failure_class,
            )
            .where(ImageResult.request_id == request_id)
            .order_by(ImageResult.idx)
        )
        self._result = session.execute(q.execution_options(yield_per=batch))
        self._rows = iter(self._result)
        self._next = next(self._rows, None)

    def get(self, idx: int) -> Any | None:
        while self._next is not None and self._next.idx < idx:
            self._next = next(self._rows, None)
        return self._next if self._next is not None and self._next.idx == idx else None

    def close(self) -> None:
        self._result.close()


def iter_result_facts(session: Session, request_id: str, batch: int = 5000) -> Iterator[Any]:
    """(idx, status, output_key, bytes_in, bytes_out, kept_original, renditions) of every result of a request, in
    index order, read `batch` rows at a time (no ORM objects, nothing held beyond the batch)."""
    q = (
        select(
            ImageResult.idx,
            ImageResult.status,
            ImageResult.output_key,
            ImageResult.bytes_in,
            ImageResult.bytes_out,
            ImageResult.kept_original,
            ImageResult.renditions,
        )
        .where(ImageResult.request_id == request_id)
        .order_by(ImageResult.idx)
    )
    yield from session.execute(q.execution_options(yield_per=batch))


def count_done(session: Session, request_id: str) -> int:
    """How many results of a request are `done` (counted from the rows, not the request's counters)."""
    q = select(func.count()).where(ImageResult.request_id == request_id, ImageResult.status == "done")
    return session.execute(q).scalar_one()


def finish(
    session: Session, request_id: str, status: str, *, output_csv_key: str | None = None, error: str | None = None
) -> bool:
    """Set the request's final status, unless its owner canceled it (a cancel is the last word: a run
    that got to its end before it stopped does not turn it back); True if this call set it."""
    assert status in FINAL_STATUSES
    values: dict = {"status": status, "updated_at": utcnow(), "error": error}
    if output_csv_key:
        values["output_csv_key"] = output_csv_key
    res = session.execute(
        update(ImageRequest).where(ImageRequest.id == request_id, ImageRequest.status != CANCELED).values(**values)
    )
    session.commit()
    return bool(res.rowcount)


def cancel(session: Session, request_id: str, reason: str) -> bool:
    """Mark a pending or processing request canceled, without committing (the caller queues its event in
    the same transaction); True if this call changed it."""
    res = session.execute(
        update(ImageRequest)
        .where(ImageRequest.id == request_id, ImageRequest.status.in_(CANCELABLE_STATUSES))
        .values(status=CANCELED, error=reason, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(res.rowcount)


def is_canceled(session: Session, request_id: str) -> bool:
    """Whether the request's owner canceled it (a run checks before and while it works)."""
    q = select(ImageRequest.status).where(ImageRequest.id == request_id)
    return session.execute(q).scalar_one_or_none() == CANCELED


def fail_unless_final(session: Session, request_id: str, reason: str) -> bool:
    """Mark a request failed unless it already reached a final status; True if this call changed it."""
    res = session.execute(
        update(ImageRequest)
        .where(ImageRequest.id == request_id, ImageRequest.status.not_in(FINAL_STATUSES))
        .values(status=FAILED, error=reason, updated_at=utcnow())
    )
    session.commit()
    return bool(res.rowcount)


def unfinished_requests(session: Session, after_seq: int, limit: int) -> Sequence[ImageRequest]:
    """Pending and processing requests with `seq > after_seq`, in seq order: the reconciliation sensor
    walks every unfinished request in batches of `limit`, wrapping round, so none is starved."""
    q = (
        select(ImageRequest)
        .where(ImageRequest.status.in_((PENDING, PROCESSING)), ImageRequest.seq > after_seq)
        .order_by(ImageRequest.seq)
        .limit(limit)
    )
    return session.scalars(q).all()
