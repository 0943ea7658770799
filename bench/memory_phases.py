"""Memory of the request-sized steps, one at a time: what `make bench` part 5 sees as one peak, split up.

    python -m bench.memory_phases --urls 100000      # 10 URLs per product, like part 5

Builds a request of N URLs on SQLite and a local object directory, runs `validate_request` and the
chunk plan, then records a result for every URL as the chunk steps would (every 97th failed; no image
is fetched: this part is about what grows with the request, not the codec), then writes the output CSV
and queues the final webhook event. For each step it prints the tracemalloc peak above the step's
start, what the step left allocated, and the process's RSS and high-water mark. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path


def _rss_mb() -> tuple[float, float]:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--urls", type=int, default=100_000)
    ap.add_argument("--per-row", type=int, default=10)
    args = ap.parse_args(argv)

    from sqlalchemy import text

    from image_pipeline.domain.catalog.csv_input import CsvLimits
    from image_pipeline.domain.db import requests as repo
    from image_pipeline.domain.db.engine import make_engine, session_factory, upgrade
    from image_pipeline.domain.images.url_policy import FetchPolicy
    from image_pipeline.domain.images.worker import ProcessOptions
    from image_pipeline.domain.keys import input_key, output_csv_key
    from image_pipeline.domain.objects.local import LocalStore
    from image_pipeline.domain.request import chunks
    from image_pipeline.domain.request.context import RequestContext
    from image_pipeline.domain.request.finish import write_output
    from image_pipeline.domain.request.status_cache import StatusCache
    from image_pipeline.domain.request.validate import validate_request
    from image_pipeline.domain.webhooks.outbox import enqueue_final_event

    tmp = Path(tempfile.mkdtemp(prefix="imgpipe-memphases-"))
    db_url = f"sqlite:///{tmp}/app.db"
    upgrade(db_url)
    sessions = session_factory(make_engine(db_url))
    store = LocalStore(tmp / "objects", "http://127.0.0.1:8000/files")
    rows = args.urls // args.per_row
    ctx = RequestContext(
        sessions=sessions,
        store=store,
        cache=StatusCache(None),
        policy=FetchPolicy(),
        options=ProcessOptions(),
        limits=CsvLimits(max_rows=rows),
        api_base_url="http://127.0.0.1:8000",
    )
    lines = ["S.No.,Product Name,Input Image Urls"]
    for r in range(rows):
        urls = ", ".join(f"http://127.0.0.1:45678/small/{r * args.per_row + j}.jpg" for j in range(args.per_row))
        lines.append(f'{r + 1},P{r + 1},"{urls}"')
    rid = str(uuid.uuid4())
    store.put(input_key(rid), ("\r\n".join(lines) + "\r\n").encode())
    del lines
    with sessions() as s:
        repo.create_request(
            s,
            request_id=rid,
            owner="bench",
            input_key=input_key(rid),
            webhook_url="https://hook.example/x",
            filename="bench.csv",
            row_count=rows,
            url_count=args.urls,
        )

    results: dict[str, dict] = {}

    def step(name: str, fn: Callable[[], object]) -> None:
        gc.collect()
        tracemalloc.start()
        rss0, _ = _rss_mb()
        cpu0 = time.process_time()
        fn()
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss1, hwm = _rss_mb()
        results[name] = {
            "peak_above_start_mb": round(peak / 2**20, 1),
            "left_allocated_mb": round(current / 2**20, 1),
            "rss_before_mb": round(rss0, 1),
            "rss_after_mb": round(rss1, 1),
            "hwm_mb": round(hwm, 1),
            "cpu_s": round(time.process_time() - cpu0, 2),
        }
        print(f"{name:22} {results[name]}", flush=True)

    step("validate_request", lambda: validate_request(ctx, rid))
    plan: list = []
    step("plan_chunks", lambda: plan.extend(chunks.plan_chunks(ctx, rid, 1000, 1000)))
    for c in plan:  # what the chunk steps leave behind (not measured)
        res = [
            repo.UrlResult(
                idx=i,
                row=row,
                url=u,
                status="done" if i % 97 else "failed",
                error=None if i % 97 else "HTTP 404",
                bytes_in=1000,
                bytes_out=500,
                output_key=f"requests/{rid}/images/{i:07d}.jpg" if i % 97 else None,
            )
            for i, row, u in json.loads(store.get(c.urls_key))
        ]
        with sessions() as s:
            repo.record_results(s, rid, res)
        store.put(c.manifest_key, "\n".join(json.dumps(r.as_dict()) for r in res).encode())
    del res

    def final_event() -> None:
        with sessions() as s:
            enqueue_final_event(s, store, rid, ctx.api_base_url, ctx.event_limits)

    step("write_output", lambda: write_output(ctx, rid))
    step("enqueue_final_event", final_event)
    with sessions() as s:
        body = s.execute(text("select length(payload) from webhook_deliveries")).scalar()
    print(f"urls {args.urls}, output CSV {store.size(output_csv_key(rid))} bytes, webhook body {body} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
