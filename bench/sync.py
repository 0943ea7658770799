"""`make bench` part 9: incremental catalogue sync. A catalogue of N distinct photos is processed twice,
with 1 % of its images changed at the origin in between; once from an origin that honours validators
(ETag + Last-Modified, 304) and once from one that sends none (the content-hash path).

    python -m bench.run --parts 9 --sync-urls 10000              # through bench.run (results.json)
    python -m bench.sync origin PORT DELAY MODE CACHE            # the origin process it starts

The pipeline runs in this process as part 3 does (`compress_request`, then the output CSV), on the
embedded defaults (SQLite, a local object directory) and the production defaults for concurrency
(`IMGPIPE_FETCH_CONCURRENCY`, `IMGPIPE_PER_HOST_CONCURRENCY`: every URL is on one host). The origin runs in
a process of its own and answers every request, 200 or 304, after `delay` seconds (its latency).
Distinct photos are made cheaply: 16 generated 1600x1200 photos, each URL's bytes one of them with a
JPEG comment naming the URL and its version, so every URL has its own bytes and its own decode.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from subprocess import DEVNULL, Popen

from bench.photos import photo_set
from image_pipeline.cli.processes import spawn, stop, wait_http
from tests.support.servers import LoopbackServer, free_port

LAST_MODIFIED = "Wed, 02 Dec 2026 10:00:00 GMT"


def with_comment(jpeg: bytes, text: str) -> bytes:
    """The JPEG with a COM segment after SOI: other bytes, the same pixels."""
    payload = text.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def serve_catalogue(port: int, delay: float, mode: str, cache: Path) -> LoopbackServer:
    """/i/<n>.jpg: photo n (one of 16 bases, made distinct); `mode` "validators" sends ETag and
    Last-Modified and answers 304 to a matching If-None-Match, "none" sends neither. POST /_change?ids=
    bumps the version (new bytes, new ETag) of those ids; GET /_stats counts bodies and 304s."""
    bases = photo_set(cache, 16)
    versions: dict[int, int] = {}
    stats = {"bodies": 0, "not_modified": 0, "bytes": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a) -> None:
            pass

        def _json(self, doc: dict) -> None:
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            query = self.path.partition("?")[2]
            ids = [int(x) for x in query.removeprefix("ids=").split(",") if x]
            with lock:
                for i in ids:
                    versions[i] = versions.get(i, 0) + 1
            self._json({"changed": len(ids)})

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/_stats":
                with lock:
                    return self._json(dict(stats))
            if path == "/health":
                return self._json({"ok": True})
            n = int(path.rsplit("/", 1)[-1].split(".")[0])
            version = versions.get(n, 0)
            etag = f'"{n}-v{version}"'
            time.sleep(delay)
            if mode == "validators" and self.headers.get("If-None-Match") == etag:
                with lock:
                    stats["not_modified"] += 1
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = with_comment(bases[n % len(bases)], f"catalogue image {n} version {version}")
            with lock:
                stats["bodies"] += 1
                stats["bytes"] += len(body)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            if mode == "validators":
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", LAST_MODIFIED)
            self.end_headers()
            self.wfile.write(body)

    return LoopbackServer(Handler, port)


def start_origin(delay: float, mode: str, cache: Path) -> tuple[Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "bench.sync", "origin", str(port), str(delay), mode, str(cache)]
    proc = spawn(cmd, cwd=Path(__file__).resolve().parent.parent, output=DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/health", procs=[proc])
    return proc, base


@dataclass
class Run:
    seconds: float
    bodies: int
    not_modified: int
    encoded: int
    statuses: dict[str, int]
    keys: list[str]


def sync_pair(
    n: int, delay: float, mode: str, cache: Path, tmp: Path, changed_share: float = 0.01, per_host: int | None = None
) -> dict:
    """The catalogue twice (1 % changed in between) from an origin in `mode`; the figures of both runs.
    `per_host`: the per-host download limit (default: the production default, IMGPIPE_PER_HOST_CONCURRENCY)."""
    import httpx

    from image_pipeline.domain.catalog.csv_input import CsvLimits
    from image_pipeline.domain.db.engine import make_engine, session_factory, upgrade
    from image_pipeline.domain.db.requests import create_request
    from image_pipeline.domain.images.url_policy import FetchPolicy
    from image_pipeline.domain.images.worker import ProcessOptions
    from image_pipeline.domain.keys import input_key
    from image_pipeline.domain.objects.local import LocalStore
    from image_pipeline.domain.request.chunks import compress_request
    from image_pipeline.domain.request.context import RequestContext
    from image_pipeline.domain.request.finish import write_output
    from image_pipeline.domain.request.status_cache import StatusCache
    from image_pipeline.domain.request.validate import validate_request
    from image_pipeline.domain.settings import Settings, parse_allow
    from tests.support.pipeline import results_for

    proc, base = start_origin(delay, mode, cache)
    try:
        defaults = Settings(_env_file=None, **({"per_host_concurrency": per_host} if per_host else {}))
        db = f"sqlite:///{tmp / f'sync-{mode}.db'}"
        upgrade(db)
        engine = make_engine(db)
        ctx = RequestContext(
            sessions=session_factory(engine),
            store=LocalStore(tmp / f"objects-{mode}", "http://cdn.example"),
            cache=StatusCache(None),
            policy=FetchPolicy(allow=parse_allow(base.removeprefix("http://"))),
            options=ProcessOptions.from_settings(defaults),
            limits=CsvLimits(),
            api_base_url="http://api.example",
        )
        assert ctx.options.sync_memory
        urls = [f"{base}/i/{i}.jpg" for i in range(n)]
        csv = "S.No.,Product Name,Input Image Urls\n" + "".join(f'{i},P{i},"{u}"\n' for i, u in enumerate(urls))

        def one_request() -> Run:
            rid = str(uuid.uuid4())
            ctx.store.put(input_key(rid), csv.encode())
            with ctx.sessions() as s:
                create_request(
                    s, request_id=rid, owner="bench", input_key=input_key(rid), webhook_url=None, filename="c.csv",
                    row_count=n, url_count=n,
                )  # fmt: skip
            before = httpx.get(base + "/_stats").json()
            t0 = time.perf_counter()
            validate_request(ctx, rid)
            compress_request(ctx, rid, defaults.chunk_size, defaults.fanout_threshold)
            write_output(ctx, rid)
            seconds = time.perf_counter() - t0
            print(f"    {mode}: request of {n} URLs in {seconds:.1f} s", flush=True)
            after = httpx.get(base + "/_stats").json()
            with ctx.sessions() as s:
                rows = results_for(s, rid)
            assert len(rows) == n and all(r.status == "done" for r in rows), "every image must be done"
            statuses: dict[str, int] = {}
            for r in rows:
                statuses[r.sync_status] = statuses.get(r.sync_status, 0) + 1
            return Run(
                seconds,
                after["bodies"] - before["bodies"],
                after["not_modified"] - before["not_modified"],
                sum(r.sync_via == "encoded" for r in rows),
                statuses,
                [r.output_key for r in rows],
            )

        first = one_request()
        # A seeded random 1 %: every 100th URL would be exactly the scored sample (IMGPIPE_SCORE_EVERY=100
        # scores idx 0, 100, ...), making every re-encode also a score, which a real day's changes are not.
        changed = sorted(random.Random(19).sample(range(n), max(1, round(n * changed_share))))
        httpx.post(base + "/_change?ids=" + ",".join(map(str, changed)))
        second = one_request()
        engine.dispose()
    finally:
        stop(proc)
    changed_set = set(changed)
    unchanged = [i for i in range(n) if i not in changed_set]
    kept = sum(first.keys[i] == second.keys[i] for i in unchanged)
    return {
        "mode": mode,
        "per_host": defaults.per_host_concurrency,
        "urls": n,
        "changed": len(changed),
        "first_s": first.seconds,
        "second_s": second.seconds,
        "ratio_first_second": first.seconds / second.seconds,
        "first_bodies": first.bodies,
        "second_bodies": second.bodies,
        "second_bodies_share": second.bodies / n,
        "second_not_modified": second.not_modified,
        "second_encoded": second.encoded,
        "second_statuses": second.statuses,
        "unchanged_urls_kept": kept,
        "unchanged_urls": len(unchanged),
        "changed_urls_new_key": sum(first.keys[i] != second.keys[i] for i in changed),
    }


def describe(r: dict) -> str:
    return (
        f"9 sync, {r['mode']} (per host {r.get('per_host')}): {r['urls']} URLs, {r['changed']} changed; "
        f"second run fetched {r['second_bodies']} bodies ({r['second_bodies_share']:.1%}), "
        f"{r['second_not_modified']} x 304, "
        f"re-encoded {r['second_encoded']}, "
        f"kept {r['unchanged_urls_kept']}/{r['unchanged_urls']} unchanged output URLs; "
        f"{r['first_s']:.1f} s -> {r['second_s']:.1f} s = {r['ratio_first_second']:.1f}x faster (load {r['load']})"
    )


if __name__ == "__main__":
    if sys.argv[1] == "origin":
        serve_catalogue(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], Path(sys.argv[5])).thread.join()
