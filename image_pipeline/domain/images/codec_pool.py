"""The run's decode/encode pool, and the one way an image goes through it (`recompress_in`).

What a hostile or broken image can do to the pool, and what keeps it to that image's URL:
- take too long: each image has a wall-clock limit measured from the moment a codec worker starts on
  it (not from when it was queued behind others). A thread cannot be stopped, so a thread pool whose
  thread overran is set aside (its thread finishes that image in the background, bounded by the scan
  and pixel limits) and new images go to fresh threads; after as many overruns as there are workers
  the run switches to processes, where an overrunning worker is killed. A process pool kills the
  overrunning process at once.
- kill its process (a native crash, the OOM killer): in a process pool, the pool is renewed and the
  images it held are decoded again, each alone in a process of its own, so only the image that kills
  that process fails. In a thread pool the run's own process dies; the chunk's next attempt (Dagster's
  run retry) then decodes in processes (`isolate`), and the image fails alone there.
Processes are spawned (never forked from a multi-threaded run worker) and are unavailable in a
daemonic process (a Celery prefork worker): there the pool stays on threads.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from image_pipeline.domain.images.codec import ImageError, recompress

if TYPE_CHECKING:
    from image_pipeline.domain.images.worker import ProcessOptions

log = logging.getLogger(__name__)


def processes_allowed() -> bool:
    """A daemonic process may not start children (multiprocessing's rule; Celery prefork workers are)."""
    return not multiprocessing.current_process().daemon


def _spawn_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _kill_processes(pool: ProcessPoolExecutor) -> None:
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.kill()


class CodecPool:
    """One worker per core (or `encode_workers`), on threads or spawned processes.

    Threads by default: simplejpeg and Pillow release the GIL while they code, so threads already reach
    the codec's all-core rate, start instantly and work where child processes are not allowed. In the
    real pipeline processes were slower (docs/performance.md): each spawned worker takes long to start
    on a busy small machine and every image crosses a pipe twice. `process` forces processes; `auto`
    uses them for requests of `process_pool_min`+ URLs; `isolate` (a chunk whose last attempt died)
    forces them where they are allowed.
    """

    def __init__(self, opts: ProcessOptions, expected: int | None = None, isolate: bool = False) -> None:
        self.opts = opts
        self.workers = opts.encode_workers or os.cpu_count() or 2
        wanted = (
            isolate
            or opts.encode_pool == "process"
            or (opts.encode_pool == "auto" and expected is not None and expected >= opts.process_pool_min)
        )
        if wanted and not processes_allowed():
            log.warning("codec processes are not allowed in a daemonic process: decoding on threads")
        self.processes = wanted and processes_allowed()
        self.executor: Executor = self._new_executor()
        self.overruns = 0
        # Process pools get no more images than workers, so the time limit never counts a queue wait
        # (their futures cannot say when a worker picked them up); thread pools say so themselves.
        self.slots = asyncio.Semaphore(self.workers) if self.processes else None

    def _new_executor(self) -> Executor:
        if self.processes:
            return _spawn_pool(self.workers)
        return ThreadPoolExecutor(self.workers, thread_name_prefix="codec")

    def renew(self, broken: Executor) -> None:
        """Replace `broken` (a process pool a dead worker broke) by a fresh pool of the same kind."""
        if self.executor is broken:
            broken.shutdown(wait=False, cancel_futures=True)
            self.executor = self._new_executor()

    def overran(self, executor: Executor) -> None:
        """An image in `executor` ran past its time limit: stop it, or at least stop waiting behind it."""
        if self.executor is not executor:
            return  # already replaced by another image's overrun or crash
        self.overruns += 1
        if isinstance(executor, ProcessPoolExecutor):
            _kill_processes(executor)  # the other images it held are decoded again alone (BrokenProcessPool)
            self.renew(executor)
            return
        # Images queued behind the overrunning one are cancelled there and go to the new pool.
        if self.overruns <= self.workers:
            executor.shutdown(wait=False, cancel_futures=True)  # its busy thread finishes that image, then exits
            self.executor = self._new_executor()
        elif processes_allowed():
            log.warning("%d codec threads overran their time limit: decoding in processes from now on", self.overruns)
            executor.shutdown(wait=False, cancel_futures=True)
            self.processes, self.slots = True, asyncio.Semaphore(self.workers)
            self.executor = self._new_executor()
        # else: threads only (a daemonic process); every image keeps its own time limit

    def __enter__(self) -> CodecPool:
        return self

    def __exit__(self, *exc) -> None:
        # Wait for the live pool only: a set-aside thread may still be finishing an overrunning image.
        if isinstance(self.executor, ProcessPoolExecutor):
            self.executor.shutdown(wait=True, cancel_futures=True)
        else:
            self.executor.shutdown(wait=True)


async def recompress_in(pool: CodecPool, body: bytes, opts: ProcessOptions):  # -> codec.Recompressed
    """`recompress` (the seed's one JPEG) in the pool, within `opts.decode_timeout` of a worker starting on it."""
    args = (body, opts.quality, opts.max_pixels, opts.max_dimension, opts.fast_jpeg, opts.max_scans, opts.max_icc_bytes)
    return await run_in(pool, recompress, args, opts.decode_timeout)


async def render_in(pool: CodecPool, body: bytes, renditions: tuple, opts: ProcessOptions):  # -> list[Rendered]
    """Every rendition of `body` from one decode (`renditions.render_source`), within the same limit."""
    from image_pipeline.domain.images.renditions import render_source

    args = (body, renditions, opts.max_pixels, opts.max_scans, opts.max_icc_bytes)
    return await run_in(pool, render_source, args, opts.decode_timeout)


async def score_in(pool: CodecPool, body: bytes, renditions: tuple, outs: list, opts: ProcessOptions) -> list:
    """The scores of a sampled URL's outputs (`renditions.score_outputs`: a second decode), within the
    same limit. SciPy's import (seconds on a cold, loaded machine) is done first, outside the limit, so
    it is never taken for a slow image."""
    from image_pipeline.domain.images import quality
    from image_pipeline.domain.images.renditions import score_outputs

    await asyncio.to_thread(quality.load)
    outputs = [(out.data, out.kept_original) for out in outs]
    args = (body, renditions, outputs, opts.score_crop, opts.max_pixels, opts.max_scans, opts.max_icc_bytes)
    return await run_in(pool, score_outputs, args, opts.decode_timeout)


async def run_in(pool: CodecPool, fn, args: tuple, timeout: float):
    """`fn(*args)` (a top-level function: processes pickle it) in the pool, within `timeout` of a worker
    starting on it; an overrun is the image's ImageError."""
    try:
        if pool.slots is not None:
            return await _in_process_pool(pool, pool.slots, fn, args, timeout)
        return await _in_thread_pool(pool, fn, args, timeout)
    except TimeoutError as exc:
        raise ImageError(f"decoding took longer than {timeout:g} s") from exc


async def _in_thread_pool(pool: CodecPool, fn, args: tuple, timeout: float):
    loop = asyncio.get_running_loop()
    while True:
        if pool.slots is not None:  # switched to processes (too many threads overran)
            return await _in_process_pool(pool, pool.slots, fn, args, timeout)
        executor = pool.executor
        started = loop.create_future()

        def run(started: asyncio.Future = started):
            loop.call_soon_threadsafe(lambda: started.done() or started.set_result(None))
            return fn(*args)

        job = executor.submit(run)
        done = asyncio.wrap_future(job)
        try:
            await asyncio.wait({started, done}, return_when=asyncio.FIRST_COMPLETED)
            if job.cancelled():
                continue  # its pool was set aside (another image overran) before it started: go to the new one
            try:
                async with asyncio.timeout(timeout):
                    return await done
            except TimeoutError:
                pool.overran(executor)
                raise
        finally:
            started.cancel()
            done.cancel()  # not started yet (this coroutine was cancelled): it never will be


async def _in_process_pool(pool: CodecPool, slots: asyncio.Semaphore, fn, args: tuple, timeout: float):
    loop = asyncio.get_running_loop()
    async with slots:
        executor = pool.executor
        try:
            async with asyncio.timeout(timeout):
                try:
                    return await loop.run_in_executor(executor, fn, *args)
                except BrokenProcessPool:
                    pool.renew(executor)
                    return await _alone(fn, args)
        except TimeoutError:
            pool.overran(executor)
            raise


async def _alone(fn, args: tuple):
    """One image in a process of its own: if it dies, only this image's URL fails."""
    pool = _spawn_pool(1)
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
    except BrokenProcessPool as exc:
        raise ImageError("this image crashed the decoder (its process died)") from exc
    finally:
        _kill_processes(pool)  # a timed-out decode must not linger
        pool.shutdown(wait=False, cancel_futures=True)
