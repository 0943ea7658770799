"""What recording one image's metrics costs: the four stage timings (fetch, decode, encode, store) and
its outcome (status, failure class, bytes), as the pipeline records them, timed with timeit in a
process whose prometheus_client counts in memory, and in one in multiprocess mode (PROMETHEUS_MULTIPROC_DIR:
every sample written to a memory-mapped file under a lock), as under `make up`.

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
failed = UrlResult(1, 1, "https://x.example/b.jpg", "failed", error="HTTP 404 from image server")
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


def main() -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") or "--child" in sys.argv:
        measure()
        return
    print(f"in-memory registry (best of 5 x {N:,}):")
    measure()
    with tempfile.TemporaryDirectory() as d:
        print(f"multiprocess mode, PROMETHEUS_MULTIPROC_DIR on {d} (best of 5 x {N:,}):")
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=d)
        subprocess.run([sys.executable, "-m", "bench.metrics_cost", "--child"], env=env, check=True)


if __name__ == "__main__":
    main()
