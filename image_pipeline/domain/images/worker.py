"""Download and recompress every URL of a request concurrently, storing each JPEG as it completes.

One shared httpx client (keep-alive), a global concurrency bound and a per-host bound for downloads,
decode/encode in a pool sized to the cores, uploads overlapped with downloads. A URL's failure is
recorded for that URL alone; nothing here raises for a bad image.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING

from image_pipeline.domain.db.requests import UrlResult
from image_pipeline.domain.images.codec import ImageError, recompress
from image_pipeline.domain.images.fetch import fetch, make_client
from image_pipeline.domain.images.host_limits import HostLimiter, make_host_limiter
from image_pipeline.domain.images.url_policy import FetchError, FetchPolicy
from image_pipeline.domain.keys import image_key
from image_pipeline.domain.objects import ObjectStore

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
    encode_workers: int = 0  # 0 = one per core
    encode_pool: str = "thread"  # "thread", "process", or "auto" (processes for requests of process_pool_min+ URLs)
    process_pool_min: int = 500
    fast_jpeg: bool = True  # JPEG->JPEG through simplejpeg when the input allows it
    max_scans: int = 32  # JPEGs with more scans are refused before decoding (progressive scan bombs)
    max_icc_bytes: int = 4 * 1024 * 1024  # larger embedded ICC profiles are ignored (read as sRGB)
    decode_timeout: float = 30.0  # seconds one image may take in the codec before its URL fails

    @classmethod
    def from_settings(cls, s: Settings) -> ProcessOptions:
        return cls(
            quality=s.jpeg_quality,
            max_pixels=s.max_image_pixels,
            max_dimension=s.max_dimension,
            concurrency=s.fetch_concurrency,
            per_host=s.per_host_concurrency,
            per_host_redis_url=s.redis_url,
            encode_workers=s.encode_workers,
            encode_pool=s.encode_pool,
            fast_jpeg=s.fast_jpeg,
            max_scans=s.max_jpeg_scans,
            max_icc_bytes=s.max_icc_bytes,
            decode_timeout=s.decode_timeout,
        )


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
) -> UrlResult:
    loop = asyncio.get_running_loop()
    try:
        # The per-host limit is taken by every hop with that hop's host: N names redirecting to one
        # server share that server's slots.
        fetched = await fetch(client, item.url, policy, hold=host_limits.hold)
        if fetched.status != 200:
            raise FetchError(f"HTTP {fetched.status} from image server")
        out = await _recompress(codec_pool, fetched.body, opts)
        key = image_key(request_id, item.idx)
    except (FetchError, ImageError) as exc:
        return UrlResult(item.idx, item.row, item.url, "failed", error=str(exc))
    except Exception as exc:  # an unexpected error still belongs to this URL only; its text stays in the log
        log.exception("request %s, URL %d: unexpected error", request_id, item.idx)
        return UrlResult(item.idx, item.row, item.url, "failed", error=f"internal error ({type(exc).__name__})")
    try:
        await loop.run_in_executor(io_pool, store.put, key, out.data, "image/jpeg")
    except Exception:  # botocore's text names endpoints, buckets and keys: the log has it, the caller not
        log.exception("request %s, URL %d: storing %s failed", request_id, item.idx, key)
        return UrlResult(item.idx, item.row, item.url, "failed", error="could not store the output image")
    return UrlResult(
        item.idx,
        item.row,
        item.url,
        "done",
        bytes_in=len(fetched.body),
        bytes_out=len(out.data),
        width=out.width,
        height=out.height,
        output_key=key,
        kept_original=out.kept_original,
    )


class CodecPool:
    """The run's codec pool, replaced by a fresh one of the same kind when a dead process broke it."""

    def __init__(self, opts: ProcessOptions, expected: int | None) -> None:
        self.opts, self.expected = opts, expected
        self.executor = codec_executor(opts, expected)

    def renew(self, broken: Executor) -> None:
        if self.executor is broken:
            broken.shutdown(wait=False, cancel_futures=True)
            self.executor = codec_executor(self.opts, self.expected)

    def __enter__(self) -> CodecPool:
        return self

    def __exit__(self, *exc) -> None:
        self.executor.shutdown(wait=True)


async def _recompress(codec_pool: CodecPool, body: bytes, opts: ProcessOptions):
    """`recompress` in the codec pool, within `opts.decode_timeout`.

    On timeout the URL fails at once; a thread cannot be stopped, so it finishes that image in the
    background (the scan and pixel limits bound how long). When the image kills a pool process (a native
    crash, the OOM killer) the pool is broken for every image in it: each one is then decoded again
    alone, in a process of its own, so only the image that kills that process fails.
    """
    args = (body, opts.quality, opts.max_pixels, opts.max_dimension, opts.fast_jpeg, opts.max_scans, opts.max_icc_bytes)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(opts.decode_timeout):
            executor = codec_pool.executor
            try:
                return await loop.run_in_executor(executor, recompress, *args)
            except BrokenProcessPool:
                codec_pool.renew(executor)
                return await _recompress_alone(args)
    except TimeoutError as exc:
        raise ImageError(f"decoding took longer than {opts.decode_timeout:g} s") from exc


async def _recompress_alone(args: tuple):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, recompress, *args)
    except BrokenProcessPool as exc:
        raise ImageError("this image crashed the decoder (its process died)") from exc
    finally:
        for proc in list(getattr(pool, "_processes", {}).values()):  # a timed-out decode must not linger
            proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)


def codec_executor(opts: ProcessOptions, expected: int | None = None) -> Executor:
    """The decode/encode pool: one worker per core (or `encode_workers`).

    Threads by default: simplejpeg and Pillow release the GIL while they code, so threads already
    reach the codec's all-core rate, start instantly and work where child processes are not allowed
    (Celery prefork workers). In the real pipeline processes were slower (docs/performance.md): each
    spawned worker takes long to start on a busy small machine and every image crosses a pipe twice.
    `process` forces spawned processes (nothing forked from a multi-threaded run worker); `auto` uses
    them for requests of `process_pool_min`+ URLs, where the start-up is paid back on more cores.
    """
    workers = opts.encode_workers or os.cpu_count() or 2
    use_processes = opts.encode_pool == "process" or (
        opts.encode_pool == "auto" and expected is not None and expected >= opts.process_pool_min
    )
    if use_processes:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    return ThreadPoolExecutor(workers, thread_name_prefix="codec")


async def process_items(
    items: Iterable[WorkItem],
    *,
    request_id: str,
    store: ObjectStore,
    policy: FetchPolicy,
    opts: ProcessOptions,
    on_result: Callable[[UrlResult], None],
    expected: int | None = None,
) -> None:
    """Process `items` with at most `opts.concurrency` in flight; `on_result` sees each outcome as it lands.

    Items are pulled lazily by a fixed set of workers, so a 100,000-URL request never has 100,000
    tasks or images in memory at once. `expected` (how many items, if known) picks the codec pool.
    """
    # A slot is held for one download at most, which the fetch deadline bounds.
    host_limits = make_host_limiter(opts.per_host, opts.per_host_redis_url)
    iterator = iter(items)
    with (
        CodecPool(opts, expected) as codec_pool,
        ThreadPoolExecutor(min(opts.concurrency, 32), thread_name_prefix="store") as io_pool,
    ):
        async with make_client(policy, max_connections=opts.concurrency) as client:

            async def worker() -> None:
                for item in iterator:  # shared iterator: each item goes to exactly one worker
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
                        )
                    )

            try:
                await asyncio.gather(*(worker() for _ in range(opts.concurrency)))
            finally:
                await host_limits.aclose()
