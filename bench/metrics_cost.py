"""What metrics cost. Recording one image: the four stage timings (fetch, decode, encode, store) and its
outcome (status, failure class, bytes), as the pipeline records them, timed with timeit in a process whose
prometheus_client counts in memory, and in one in multiprocess mode (PROMETHEUS_MULTIPROC_DIR: every
sample written to a memory-mapped file under a lock), as under `make up`. Scraping: /metrics's exposition
with the files of 10, 100 and 1,000 processes (runs) in the directory, each as full as a run leaves it.

    python -m bench.metrics_cost
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import timeit

N = 200_000
SETUP = """
from image_pipeline.domain.db.requests import UrlResult
from image_pipeline.domain.telemetry.metrics import record_result, timed
done = UrlResult(0, 1, "https://x.example/a.jpg", "done", bytes_in=200_000, bytes_out=60_000)
failed = UrlResult(1, 1, "https://x.example/b.jpg", "failed", error="HTTP 404", failure_class="permanent")
def one_image(result):
    for stage in ("fetch", "decode", "encode", "store"):
        with timed(stage):
            pass
    record_result(result)
"""


def measure() -> None:
    for name, stmt in (("done image", "one_image(done)"), ("failed image", "one_image(failed)")):
        best = min(timeit.repeat(stmt, SETUP, number=N, repeat=5)) / N
        print(f"  {name}: {best * 1e6:.2f} us")


def scrape_cost() -> None:
    """In multiprocess mode: fill this process's files as a run does, copy them as N processes', time a scrape."""
    import shutil
    from pathlib import Path

    from image_pipeline.domain.images.failures import FAILURE_CLASSES
    from image_pipeline.domain.telemetry import metrics

    for cls in FAILURE_CLASSES:
        metrics.IMAGES.labels("failed", cls).inc()
    exec(SETUP + "\none_image(done)", {})
    metrics.record_request_end("completed", 12.0)
    metrics.record_webhook_attempt("delivered")
    metrics.record_http("POST", "/api/upload", 202, 0.05)
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    mine = list(directory.glob(f"*_{os.getpid()}.db"))
    have = 1
    for n in (10, 100, 1000):
        for pid in range(have, n):
            for f in mine:
                shutil.copyfile(f, directory / f.name.replace(str(os.getpid()), f"9{pid:06d}"))
        have = n
        best = min(timeit.repeat(metrics.exposition, number=1, repeat=3))
        size = sum(f.stat().st_size for f in directory.glob("*.db")) / 2**20
        print(f"  scrape with {n:>5,} processes' files ({size:,.0f} MiB apparent): {best * 1000:,.1f} ms")


def main() -> None:
    if "--scrape" in sys.argv:
        scrape_cost()
        return
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") or "--child" in sys.argv:
        measure()
        return
    print(f"in-memory registry (best of 5 x {N:,}):")
    measure()
    with tempfile.TemporaryDirectory() as d:
        print(f"multiprocess mode, PROMETHEUS_MULTIPROC_DIR on {d} (best of 5 x {N:,}):")
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=d)
        subprocess.run([sys.executable, "-m", "bench.metrics_cost", "--child"], env=env, check=True)
    with tempfile.TemporaryDirectory() as d:
        print("scraping /metrics in multiprocess mode (best of 3):")
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=d)
        subprocess.run([sys.executable, "-m", "bench.metrics_cost", "--scrape"], env=env, check=True)


if __name__ == "__main__":
    main()
