"""Download and recompress every URL of a request concurrently, storing each JPEG as it completes.

One shared httpx client (keep-alive), a global concurrency bound and a per-host bound for downloads,
decode/encode in a pool sized to the cores, uploads overlapped with downloads. A URL's failure is
recorded for that URL alone; nothing here raises for a bad image.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from image_pipeline.domain.db.requests import UrlResult
from image_pipeline.domain.images import sync
from image_pipeline.domain.images.codec import ImageError
from image_pipeline.domain.images.codec_pool import CodecPool, recompress_in, render_in, score_in
from image_pipeline.domain.images.failures import classify_failure
from image_pipeline.domain.images.fetch import fetch, make_client
from image_pipeline.domain.images.fetch_retry import FetchRetry, HttpStatusError, fetch_with_retries
from image_pipeline.domain.images.host_limits import HostLimiter, make_host_limiter
from image_pipeline.domain.images.renditions import Rendition
from image_pipeline.domain.images.sync import SyncMemory
from image_pipeline.domain.images.url_policy import FetchError, FetchPolicy
from image_pipeline.domain.keys import image_key
from image_pipeline.domain.objects import ObjectStore
from image_pipeline.domain.telemetry.metrics import timed

if TYPE_CHECKING:
    from image_pipeline.domain.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkItem:
    idx: int  # position of the URL in the request
    row: int  # CSV line the URL came from
    url: str


@dataclass(frozen=True)
class ProcessOptions:
    quality: int = 50
    max_pixels: int = 50_000_000
    max_dimension: int | None = None
    concurrency: int = 32
    per_host: int = 8
    per_host_redis_url: str | None = None  # set: the per-host limit holds across runs and machines
    host_slot_wait: float = 120.0  # seconds a URL may wait for a slot of its host
    store_put_attempts: int = 3  # tries to store one output (beyond the S3 client's own retries)
    store_put_backoff: float = 1.0  # seconds before the second try; doubled each time, jittered
    encode_workers: int = 0  # 0 = one per core
    encode_pool: str = "thread"  # "thread", "process", or "auto" (processes for requests of process_pool_min+ URLs)
    process_pool_min: int = 500
    fast_jpeg: bool = True  # JPEG->JPEG through simplejpeg when the input allows it
    max_scans: int = 32  # JPEGs with more scans are refused before decoding (progressive scan bombs)
    max_icc_bytes: int = 4 * 1024 * 1024  # larger embedded ICC profiles are ignored (read as sRGB)
    decode_timeout: float = 30.0  # seconds one image may take in the codec before its URL fails
    score_every: int = 100  # SSIMULACRA2 of one URL in this many (idx 0 always); 0 = none
    score_crop: int = 256  # side of the centre crop scored
    fetch_retry: FetchRetry = FetchRetry()  # transient download failures tried again within the run
    sync_memory: bool = True  # the tenant's memory of sources and outputs (docs/sync.md)

    @classmethod
    def from_settings(cls, s: Settings) -> ProcessOptions:
        return cls(
            quality=s.jpeg_quality,
            max_pixels=s.max_image_pixels,
            max_dimension=s.max_dimension,
            concurrency=s.fetch_concurrency,
            per_host=s.per_host_concurrency,
            per_host_redis_url=s.redis_url,
            host_slot_wait=s.host_slot_wait,
            store_put_attempts=s.store_put_attempts,
            store_put_backoff=s.store_put_backoff,
            encode_workers=s.encode_workers,
            encode_pool=s.encode_pool,
            fast_jpeg=s.fast_jpeg,
            max_scans=s.max_jpeg_scans,
            max_icc_bytes=s.max_icc_bytes,
            decode_timeout=s.decode_timeout,
            score_every=s.score_every,
            score_crop=s.score_crop,
            fetch_retry=FetchRetry.from_settings(s),
            sync_memory=s.sync_memory,
        )

    def scores(self, idx: int) -> bool:
        """Whether URL `idx` of a request is in its scored sample."""
        return self.score_every > 0 and idx % self.score_every == 0


def work_items(rows: Iterable, skip: set[int] | frozenset[int] = frozenset()) -> Iterator[WorkItem]:
    """Every URL of `rows` in order, numbered; indices in `skip` (already done) are left out."""
    idx = 0
    for row in rows:
        for url in row.urls:
            if idx not in skip:
                yield WorkItem(idx, row.row, url)
            idx += 1


async def _process_one(
    item: WorkItem,
    *,
    request_id: str,
    store: ObjectStore,
    client,
    policy: FetchPolicy,
    opts: ProcessOptions,
    host_limits: HostLimiter,
    codec_pool: CodecPool,
    io_pool: Executor,
    renditions: tuple[Rendition, ...] = (),
    memory: SyncMemory | None = None,
) -> UrlResult:
    """One URL: one fetch, one decode, then the seed's one JPEG or a profile's `renditions`, stored.

    With the sync `memory`: a URL already fetched in this chunk is not fetched again, and the outputs
    of bytes this tenant already made under these settings are reused (`_process_synced`)."""
    if memory is None:
        return await _process_plain(
            item, request_id=request_id, store=store, client=client, policy=policy, opts=opts,
            host_limits=host_limits, codec_pool=codec_pool, io_pool=io_pool, renditions=renditions,
        )  # fmt: skip
    first = memory.url_results.get(item.url)
    if first is not None:  # the same URL under another product: its first result, fetched once
        r = await asyncio.shield(first)
        via = sync.DUPLICATE if r.status == "done" else r.sync_via
        return dataclasses.replace(r, idx=item.idx, row=item.row, sync_via=via)
    mine: asyncio.Future[UrlResult] = asyncio.get_running_loop().create_future()
    memory.url_results[item.url] = mine
    try:
        result = await _process_synced(
            item, request_id=request_id, store=store, client=client, policy=policy, opts=opts,
            host_limits=host_limits, codec_pool=codec_pool, io_pool=io_pool, renditions=renditions, memory=memory,
        )  # fmt: skip
    except BaseException:
        mine.cancel()
        raise
    mine.set_result(result)
    return result


def _failed(item: WorkItem, request_id: str, exc: Exception) -> UrlResult:
    """A URL's failure in words and as a class; an unexpected error's text stays in the log."""
    if isinstance(exc, (FetchError, ImageError)):
        return UrlResult(item.idx, item.row, item.url, "failed", error=str(exc), failure_class=classify_failure(exc))
    if isinstance(exc, _StoreFailed):  # botocore's text names endpoints, buckets and keys: the log has it
        return UrlResult(
            item.idx, item.row, item.url, "failed", error="could not store the output image", failure_class="internal"
        )
    log.error("request %s, URL %d: unexpected error", request_id, item.idx, exc_info=exc)
    return UrlResult(
        item.idx, item.row, item.url, "failed", error=f"internal error ({type(exc).__name__})", failure_class="internal"
    )


async def _process_plain(
    item: WorkItem,
    *,
    request_id: str,
    store: ObjectStore,
    client,
    policy: FetchPolicy,
    opts: ProcessOptions,
    host_limits: HostLimiter,
    codec_pool: CodecPool,
    io_pool: Executor,
    renditions: tuple[Rendition, ...],
) -> UrlResult:
    """Without the memory: outputs under the request's own keys."""

    def key_of(n: int, out) -> str:  # the first unnamed (it fills `Output Image Urls`), the others by name
        if renditions:
            return image_key(request_id, item.idx, out.extension, None if n == 0 else out.name)
        return image_key(request_id, item.idx)

    try:
        fetched = await _fetch_image(client, item, request_id, policy, opts, host_limits)
        outs, scores = await _encode(codec_pool, fetched.body, renditions, opts, item.idx)
        made = await _store_outputs(io_pool, store, outs, key_of, renditions, opts, scores)
    except Exception as exc:  # one URL's failure stays its own
        return _failed(item, request_id, exc)
    return UrlResult(item.idx, item.row, item.url, "done", bytes_in=len(fetched.body), **made)


async def _process_synced(
    item: WorkItem,
    *,
    request_id: str,
    store: ObjectStore,
    client,
    policy: FetchPolicy,
    opts: ProcessOptions,
    host_limits: HostLimiter,
    codec_pool: CodecPool,
    io_pool: Executor,
    renditions: tuple[Rendition, ...],
    memory: SyncMemory,
) -> UrlResult:
    """With the memory: a conditional fetch when the outputs of the URL's last bytes are there; a 304 or
    the same bytes reuse them; new bytes are encoded once per chunk under content-addressed keys."""
    try:
        asked = memory.validators(item.url)
        fetched = await _fetch_image(client, item, request_id, policy, opts, host_limits, asked)
        known = memory.sources.get(item.url)
        if fetched.status == 304:
            assert known is not None  # validators are only sent for a known URL
            return sync.reused(
                item.url, item.idx, item.row, memory.outputs[known.content_hash], known.content_hash,
                sync.UNCHANGED, sync.NOT_MODIFIED, known.bytes,
                fetched.etag or known.etag, fetched.last_modified or known.last_modified,
            )  # fmt: skip
        digest = sync.content_hash(fetched.body)
        status = memory.status_of(item.url, digest)
        outputs = await memory.reusable(digest, io_pool)
        if outputs is not None:
            same = asked and known is not None and known.content_hash == digest
            via = sync.VALIDATORS_IGNORED if same else sync.SAME_BYTES
            return sync.reused(
                item.url, item.idx, item.row, outputs, digest, status, via, len(fetched.body),
                fetched.etag, fetched.last_modified,
            )  # fmt: skip
        made, encoded = await _encode_once(
            digest, fetched.body, item.idx, store, codec_pool, io_pool, renditions, opts, memory
        )
    except Exception as exc:  # one URL's failure stays its own
        return _failed(item, request_id, exc)
    return UrlResult(
        item.idx, item.row, item.url, "done", bytes_in=len(fetched.body), **made, sync_status=status,
        sync_via=sync.ENCODED if encoded else sync.SAME_BYTES, content_hash=digest,
        etag=fetched.etag, last_modified=fetched.last_modified,
    )  # fmt: skip


class _StoreFailed(Exception):
    """Storing an output failed (the log has botocore's text; the caller gets words without endpoints)."""


async def _encode_once(
    digest: str,
    body: bytes,
    idx: int,
    store: ObjectStore,
    codec_pool: CodecPool,
    io_pool: Executor,
    renditions: tuple[Rendition, ...],
    opts: ProcessOptions,
    memory: SyncMemory,
) -> tuple[dict, bool]:
    """Decode, encode and store the outputs of these bytes, once per chunk: the same bytes at another
    URL wait for the first encode and share its outputs (their keys are the same anyway). True when
    this call encoded them."""
    first = memory.encodes.get(digest)
    if first is not None:
        return await asyncio.shield(first), False
    mine: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
    memory.encodes[digest] = mine
    try:
        outs, scores = await _encode(codec_pool, body, renditions, opts, idx)
        made = await _store_outputs(
            io_pool, store, outs, lambda n, out: memory.key(digest, n, _extension(out)), renditions, opts, scores
        )
    except BaseException as exc:
        del memory.encodes[digest]  # a later URL with these bytes tries again
        if isinstance(exc, Exception):
            mine.set_exception(exc)
            mine.exception()  # retrieved: no "never retrieved" warning when nobody else waited
        else:
            mine.cancel()
        raise
    mine.set_result(made)
    return made, True


def _extension(out) -> str:
    """A rendition's extension; the seed's output (codec.Recompressed) is always a JPEG."""
    return getattr(out, "extension", "jpg")


async def _fetch_image(
    client,
    item: WorkItem,
    request_id: str,
    policy: FetchPolicy,
    opts: ProcessOptions,
    host_limits: HostLimiter,
    validators: dict[str, str] | None = None,
):
    """The URL's body (a 200), or a 304 when `validators` asked for one; transient failures tried again."""
    # The per-host limit is taken by every hop with that hop's host: N names redirecting to one
    # server share that server's slots. A slot is held for one try, never across the wait between tries.
    with timed("fetch"):  # with the wait for a slot of its host, and its in-run retries
        fetched = await fetch_with_retries(
            lambda: fetch(client, item.url, policy, headers=validators or None, hold=host_limits.hold),
            opts.fetch_retry,
            host_limits,
            what=f"request {request_id}, URL {item.idx}",
        )
    if fetched.status == 304 and validators:
        return fetched
    if fetched.status != 200:
        raise HttpStatusError(fetched.status)
    return fetched


async def _encode(
    codec_pool: CodecPool, body: bytes, renditions: tuple[Rendition, ...], opts: ProcessOptions, idx: int
):
    """The outputs of one decode, and their scores when URL `idx` is in the scored sample (else Nones)."""
    if renditions:
        outs = await render_in(codec_pool, body, renditions, opts)
    else:
        outs = [await recompress_in(codec_pool, body, opts)]
    scores: list[float | None] = [None] * len(outs)
    if opts.scores(idx):
        try:
            scores = await score_in(codec_pool, body, renditions, outs, opts)
        except Exception:  # the evidence is lost, not the image: its outputs are made and good
            log.warning("URL %d: scoring its outputs failed", idx, exc_info=True)
    return outs, scores


async def _store_outputs(
    io_pool: Executor,
    store: ObjectStore,
    outs,
    key_of: Callable,
    renditions: tuple[Rendition, ...],
    opts: ProcessOptions,
    scores: list[float | None],
) -> dict:
    """Store each output under `key_of(n, out)`; the result's fields describing them. Raises _StoreFailed."""
    keys: list[str] = []
    for n, out in enumerate(outs):
        key = key_of(n, out)
        try:
            with timed("store"):  # with its retries
                await _store(io_pool, store, key, out.data, out.content_type if renditions else "image/jpeg", opts)
        except Exception as exc:
            log.exception("storing %s failed", key)
            raise _StoreFailed() from exc
        keys.append(key)
    made = [
        {"name": out.name, "key": key, "format": out.format, "width": out.width, "height": out.height,
         "bytes": len(out.data), "quality": out.quality, "kept_original": out.kept_original,
         "source_width": out.source_size[0], "source_height": out.source_size[1], "score": score}
        for out, key, score in zip(outs, keys, scores, strict=True)
    ] if renditions else None  # fmt: skip
    first = outs[0]
    return {
        "bytes_out": sum(len(out.data) for out in outs),
        "width": first.width,
        "height": first.height,
        "output_key": keys[0],
        "kept_original": first.kept_original,
        "renditions": made,
        "score": scores[0],
    }


async def _store(
    io_pool: Executor, store: ObjectStore, key: str, data: bytes, content_type: str, opts: ProcessOptions
) -> None:
    """`store.put`, tried again with jittered exponential backoff when it fails.

    botocore retries throttling, 5xx and dropped connections a few times within about a second; an
    S3 blip longer than that would otherwise fail the URL for the rest of the run (until the retry
    schedule). A put is idempotent (the key is deterministic), so trying again is always safe.
    """
    loop = asyncio.get_running_loop()
    for attempt in range(1, max(1, opts.store_put_attempts) + 1):
        try:
            await loop.run_in_executor(io_pool, store.put, key, data, content_type)
            return
        except Exception as exc:
            if attempt >= opts.store_put_attempts:
                raise
            delay = opts.store_put_backoff * 2 ** (attempt - 1) * (0.5 + random.random())
            log.warning("storing %s failed (%s), try %d again in %.1f s", key, type(exc).__name__, attempt + 1, delay)
            await asyncio.sleep(delay)


async def process_items(
    items: Iterable[WorkItem],
    *,
    request_id: str,
    store: ObjectStore,
    policy: FetchPolicy,
    opts: ProcessOptions,
    on_result: Callable[[UrlResult], None],
    expected: int | None = None,
    isolate: bool = False,
    renditions: tuple[Rendition, ...] = (),
    stop: Callable[[], bool] = lambda: False,
    memory: SyncMemory | None = None,
) -> None:
    """Process `items` with at most `opts.concurrency` in flight; `on_result` sees each outcome as it lands.

    Items are pulled lazily by a fixed set of workers, so a 100,000-URL request never has 100,000
    tasks or images in memory at once. `expected` (how many items, if known) picks the codec pool;
    `isolate` decodes in processes (the last attempt at these items died: see `codec_pool`);
    `renditions` (a profile's) replace the seed's one JPEG per URL; once `stop()` is true (the request
    was canceled) no worker takes another item, and the items not taken get no result; `memory` (the
    tenant's sync memory of these URLs) makes outputs content-addressed and reuses what was made before.
    """
    # A slot is held for one download at most, which the fetch deadline bounds.
    host_limits = make_host_limiter(opts.per_host, opts.per_host_redis_url, wait=opts.host_slot_wait)
    iterator = iter(items)
    with (
        CodecPool(opts, expected, isolate) as codec_pool,
        ThreadPoolExecutor(min(opts.concurrency, 32), thread_name_prefix="store") as io_pool,
    ):
        async with make_client(policy, max_connections=opts.concurrency) as client:

            async def worker() -> None:
                for item in iterator:  # shared iterator: each item goes to exactly one worker
                    if stop():
                        return
                    on_result(
                        await _process_one(
                            item,
                            request_id=request_id,
                            store=store,
                            client=client,
                            policy=policy,
                            opts=opts,
                            host_limits=host_limits,
                            codec_pool=codec_pool,
                            io_pool=io_pool,
                            renditions=renditions,
                            memory=memory,
                        )
                    )

            try:
                await asyncio.gather(*(worker() for _ in range(opts.concurrency)))
            finally:
                await host_limits.aclose()
