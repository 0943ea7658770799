"""Chunked fan-out of one request: the unit a Dagster step processes, on whatever machine runs it.

A request's URLs are cut into chunks of `chunk_size` (in input order). The plan and every chunk's URL
list are objects in storage, so a chunk step needs only its key: steps pass keys, never image bytes.
A chunk writes its images and then a manifest (one JSON line per URL, in order); a manifest's presence
means the chunk is done, so re-running a request skips chunks that finished without failures, and a
retried chunk skips the URLs whose results and objects are already stored (deterministic keys:
nothing is duplicated); only failed or unfinished URLs are fetched again.

An attempt at a chunk leaves a marker in storage while it runs and removes it when it ends, with a
result or an exception. A marker found at the start is the trace of an attempt whose process died
(a native crash in a codec thread, the OOM killer, a killed worker): that attempt's images are then
decoded in processes, so an image that kills its process fails alone instead of killing every retry.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from image_pipeline.domain.db import requests as repo
from image_pipeline.domain.images import sync
from image_pipeline.domain.images.renditions import Rendition
from image_pipeline.domain.images.sync import SyncMemory
from image_pipeline.domain.images.worker import WorkItem, process_items, work_items
from image_pipeline.domain.keys import (
    chunk_attempt_key,
    chunk_manifest_key,
    chunk_summary_key,
    chunk_urls_key,
    plan_key,
)
from image_pipeline.domain.objects import ObjectNotFound
from image_pipeline.domain.profiles import profile_from_json
from image_pipeline.domain.request.context import RequestCanceled, RequestContext, RequestFailed, iter_rows
from image_pipeline.domain.request.progress import ProgressRecorder
from image_pipeline.domain.telemetry import tracing
from image_pipeline.domain.telemetry.metrics import record_result

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chunk:
    """A slice of a request's URLs: indices `start` .. `start + count - 1`."""

    request_id: str
    number: int
    start: int
    count: int

    @property
    def urls_key(self) -> str:
        return chunk_urls_key(self.request_id, self.number)

    @property
    def manifest_key(self) -> str:
        return chunk_manifest_key(self.request_id, self.number)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Chunk:
        return cls(**d)


@dataclass(frozen=True)
class ChunkSummary:
    number: int
    total: int
    done: int
    failed: int
    skipped: int  # URLs (or the whole chunk) already finished by an earlier attempt
    bytes_in: int
    bytes_out: int
    kept_original: int
    errors: list[tuple[str, str]]
    # rendition name ("image" for the seed's one JPEG) -> SSIMULACRA2 of this chunk's scored sample
    scores: dict[str, list[float]] = field(default_factory=dict)
    # The sync memory (zero without it): URLs by status, bodies not downloaded again (bytes), and
    # URLs whose origin answered 200 with the same bytes to a conditional fetch.
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    encoded: int = 0
    bytes_not_refetched: int = 0
    validators_ignored: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def plan_chunks(ctx: RequestContext, request_id: str, chunk_size: int, fanout_threshold: int) -> list[Chunk]:
    """Cut the request into chunks and store each chunk's URL list. A request with fewer than
    `fanout_threshold` URLs is one chunk. Idempotent: an existing plan is reused as it is (a changed
    setting never re-cuts a request that is half done). The rows are streamed: one chunk's URLs in
    memory at a time."""
    stored = _stored_plan(ctx, request_id)
    if stored is not None:
        return stored
    items = work_items(iter_rows(ctx, request_id))
    head = list(itertools.islice(items, fanout_threshold))
    if len(head) < fanout_threshold:
        chunk_size = fanout_threshold  # the whole request is `head`: one chunk
    items = itertools.chain(head, items)
    chunks = []
    for number, batch in enumerate(iter(lambda: list(itertools.islice(items, chunk_size)), [])):
        chunk = Chunk(request_id, number, batch[0].idx, len(batch))
        ctx.store.put(chunk.urls_key, json.dumps([[i.idx, i.row, i.url] for i in batch]).encode(), "application/json")
        chunks.append(chunk)
    # Written last: a plan that exists always has all of its chunk lists.
    ctx.store.put(plan_key(request_id), json.dumps([c.as_dict() for c in chunks]).encode(), "application/json")
    return chunks


def _summary_of(number: int, results: list[dict], skipped: int) -> ChunkSummary:
    done = [r for r in results if r["status"] == "done"]
    return ChunkSummary(
        number=number,
        total=len(results),
        done=len(done),
        failed=len(results) - len(done),
        skipped=skipped,
        bytes_in=sum(r["bytes_in"] or 0 for r in done),
        bytes_out=sum(r["bytes_out"] or 0 for r in done),
        kept_original=sum(bool(r["kept_original"]) for r in done),
        errors=[(r["url"], r["error"] or "") for r in results if r["status"] != "done"][:20],
        new=sum(r.get("sync_status") == sync.NEW for r in done),
        changed=sum(r.get("sync_status") == sync.CHANGED for r in done),
        unchanged=sum(r.get("sync_status") == sync.UNCHANGED for r in done),
        encoded=sum(r.get("sync_via") == sync.ENCODED for r in done),
        bytes_not_refetched=sum(
            r["bytes_in"] or 0 for r in done if r.get("sync_via") in (sync.NOT_MODIFIED, sync.DUPLICATE)
        ),
        validators_ignored=sum(r.get("sync_via") == sync.VALIDATORS_IGNORED for r in done),
        scores=_scores_of(done),
    )


def _scores_of(done: list[dict]) -> dict[str, list[float]]:
    scores: dict[str, list[float]] = {}
    for r in done:
        made = r.get("renditions") or [{"name": "image", "score": r.get("score")}]
        for m in made:
            if m.get("score") is not None:
                scores.setdefault(m["name"], []).append(m["score"])
    return scores


def score_table(summaries_scores: list[dict[str, list[float]]]) -> list[tuple[str, int, float, float]]:
    """(rendition, scored outputs, mean, min) over a request's chunks, in first-seen order."""
    merged: dict[str, list[float]] = {}
    for scores in summaries_scores:
        for name, values in scores.items():
            merged.setdefault(name, []).extend(values)
    return [(n, len(v), round(sum(v) / len(v), 2), min(v)) for n, v in merged.items() if v]


def read_manifest(ctx: RequestContext, chunk: Chunk) -> list[dict]:
    return [json.loads(line) for line in ctx.store.get(chunk.manifest_key).splitlines() if line]


def process_chunk(ctx: RequestContext, chunk: Chunk) -> ChunkSummary:
    """Fetch and recompress one chunk's URLs (those not already done), then write its manifest."""
    with tracing.span(
        "chunk", request_id=chunk.request_id, chunk=chunk.number, urls=chunk.count, first_url=chunk.start
    ) as span:
        summary = _process_chunk(ctx, chunk)
        span.set_attributes({"done": summary.done, "failed": summary.failed, "skipped": summary.skipped})
    log.info(
        "chunk %d: %d URLs, %d done, %d failed, %d already stored",
        chunk.number,
        summary.total,
        summary.done,
        summary.failed,
        summary.skipped,
    )
    return summary


def _process_chunk(ctx: RequestContext, chunk: Chunk) -> ChunkSummary:
    ctx.stop_if_canceled(chunk.request_id)
    if ctx.store.exists(chunk.manifest_key):
        earlier = read_manifest(ctx, chunk)
        if all(r["status"] == "done" for r in earlier):
            return _summary_of(chunk.number, earlier, skipped=chunk.count)
        # A finished chunk with failed URLs (a "retry failed images" run): only those are tried again.
    try:
        items = [WorkItem(*t) for t in json.loads(ctx.store.get(chunk.urls_key))]
    except ObjectNotFound as exc:
        raise RequestFailed(f"chunk {chunk.number} of request {chunk.request_id} is missing from storage") from exc
    rid = chunk.request_id
    with ctx.sessions() as s:
        req = repo.get_request(s, rid)
        profile = profile_from_json(req.profile if req else None)
        owner, force = (req.owner, req.force) if req else ("", False)
        earlier = repo.completed_indices(s, rid, start=chunk.start, stop=chunk.start + chunk.count)
        # A retried chunk skips what an earlier attempt stored (the object must really be there).
        results = {i: res for i, r in earlier.items() if _stored(ctx, res := repo.UrlResult.from_row(r))}
    skipped = len(results)
    marker = chunk_attempt_key(rid, chunk.number)
    isolate = ctx.store.exists(marker)
    if isolate:
        log.warning("chunk %d of request %s: its last attempt died; decoding in processes", chunk.number, rid)
    ctx.store.put(marker, b"", "text/plain")
    try:
        renditions = profile.renditions_tuple() if profile else ()
        memory = None
        if ctx.options.sync_memory:
            todo = [i.url for i in items if i.idx not in results]
            opts = ctx.options
            memory = SyncMemory.load(ctx.sessions, owner, todo, renditions, opts.quality, opts.max_dimension, force)
        lines = _process(ctx, chunk, items, results, isolate, renditions, memory)
    except BaseException:
        ctx.store.delete(marker)  # this attempt did not die: it failed, and says why
        raise
    ctx.store.delete(marker)
    return _summary_of(chunk.number, lines, skipped)


def _stored(ctx: RequestContext, r: repo.UrlResult) -> bool:
    """Whether a recorded result's outputs are really in storage (the last is stored last)."""
    last = r.renditions[-1]["key"] if r.renditions else r.output_key
    return bool(last) and ctx.store.exists(last)


def _process(
    ctx: RequestContext,
    chunk: Chunk,
    items: list[WorkItem],
    results: dict[int, repo.UrlResult],
    isolate: bool,
    renditions: tuple[Rendition, ...],
    memory: SyncMemory | None = None,
) -> list[dict]:
    rid, skipped = chunk.request_id, len(results)
    with ThreadPoolExecutor(1, thread_name_prefix="progress") as writer:
        recorder = ProgressRecorder(ctx, rid, writer=writer, memory=memory)

        def on_result(r: repo.UrlResult) -> None:
            results[r.idx] = r
            recorder(r)
            record_result(r)

        try:
            asyncio.run(
                process_items(
                    (i for i in items if i.idx not in results),
                    request_id=rid,
                    store=ctx.store,
                    policy=ctx.policy,
                    opts=ctx.options,
                    on_result=on_result,
                    expected=chunk.count - skipped,
                    isolate=isolate,
                    renditions=renditions,
                    stop=recorder.canceled.is_set,
                    memory=memory,
                )
            )
        except BaseException:
            # Interrupted (the run terminated: a cancel) or failed: the results that landed are still
            # recorded, so what was stored stays listed (and a retry skips it).
            try:
                recorder.flush()
            except Exception:
                log.exception("request %s: results of chunk %d not recorded", rid, chunk.number)
            raise
        recorder.flush()
    if recorder.canceled.is_set():  # the URLs not reached stay unrecorded; what was stored is kept
        raise RequestCanceled(rid)
    lines = [results[i.idx].as_dict() for i in items]
    ctx.store.put(chunk.manifest_key, "\n".join(json.dumps(r) for r in lines).encode(), "application/x-ndjson")
    return lines


def store_summary(ctx: RequestContext, request_id: str, summary: ChunkSummary, run_id: str) -> None:
    """What one chunk step did, for the request's summary step (tagged with the Dagster run that did it)."""
    body = json.dumps({**summary.as_dict(), "run_id": run_id}).encode()
    ctx.store.put(chunk_summary_key(request_id, summary.number), body, "application/json")


def load_summary(ctx: RequestContext, chunk: Chunk) -> dict | None:
    try:
        return json.loads(ctx.store.get(chunk_summary_key(chunk.request_id, chunk.number)))
    except ObjectNotFound:
        return None


def iter_manifest_results(ctx: RequestContext, chunks: list[Chunk]) -> Iterator[dict]:
    """Every URL's result in input order, one chunk's manifest in memory at a time."""
    for chunk in chunks:
        try:
            yield from read_manifest(ctx, chunk)
        except ObjectNotFound as exc:
            raise RequestFailed(f"chunk {chunk.number} of request {chunk.request_id} has no manifest") from exc


def _stored_plan(ctx: RequestContext, request_id: str) -> list[Chunk] | None:
    try:
        return [Chunk.from_dict(d) for d in json.loads(ctx.store.get(plan_key(request_id)))]
    except ObjectNotFound:
        return None


def load_plan(ctx: RequestContext, request_id: str) -> list[Chunk]:
    plan = _stored_plan(ctx, request_id)
    if plan is None:
        raise RequestFailed(f"request {request_id} has no chunk plan (compressed_images did not run)")
    return plan


def compress_request(
    ctx: RequestContext, request_id: str, chunk_size: int = 1000, fanout_threshold: int = 1000
) -> list[ChunkSummary]:
    """Every chunk of a request, one after the other in this process (what the in-process executor does
    with the graph; tests and the benchmark call it without Dagster)."""
    return [process_chunk(ctx, c) for c in plan_chunks(ctx, request_id, chunk_size, fanout_threshold)]
