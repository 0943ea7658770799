"""`make bench`: the seed's serial loop, the codec's all-core limit and our pipeline, side by side on the
same generated photos from the same loopback image server (fixed delay per request) into a moto S3
server; then the `make up` stack end to end (latency, memory), the API's upload rate, and a catalogue
synced twice (part 9, bench/sync.py: docs/sync.md).

    python -m bench.run                      # every part, defaults (200 photos, 50 ms)
    python -m bench.run --parts 2,3 -n 100   # only some parts
    python -m bench.run --help

Prints one table, writes bench/results.json and bench/results.png. A benchmark, not a test: it asserts
nothing except that the work was really done (every image stored, every upload recorded).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from subprocess import Popen

from bench.photos import make_photo, photo_set
from bench.servers import start_moto, upload_urls
from image_pipeline.cli.processes import spawn, stop, wait_http
from tests.support.servers import WebhookReceiver, free_port, start_image_server

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CORES = os.cpu_count() or 1
KEY = "bench-key-0123456789abcdef"  # IMGPIPE_API_KEY_MIN_CHARS (16)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def mb(n: int) -> float:
    return n / 1e6


# ---------------------------------------------------------------------------------------------- codecs
def codec_pillow(data: bytes) -> int:
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img = img.convert("RGB")
    out = io.BytesIO()
    img.save(out, "JPEG", quality=50)
    return len(out.getvalue())


def codec_fast(data: bytes) -> int:
    import simplejpeg

    return len(simplejpeg.encode_jpeg(simplejpeg.decode_jpeg(data), quality=50, colorsubsampling="420"))


def codec_ours(data: bytes) -> int:
    from image_pipeline.domain.images.codec import recompress

    return len(recompress(data, 50).data)


def codec_catalogue(data: bytes) -> int:
    """The catalogue profile's three renditions from one decode: the codec-only work of part 8."""
    from image_pipeline.domain.images.renditions import render_source
    from image_pipeline.domain.profiles import BUILTIN

    return sum(len(r.data) for r in render_source(data, BUILTIN["catalogue"].renditions_tuple()))


def _time_pool(pool: Executor, fn, photos: list[bytes]) -> float:
    list(pool.map(fn, photos[: CORES * 2]))  # warm: workers started, modules imported
    t0 = time.perf_counter()
    list(pool.map(fn, photos))
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------- parts
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results: dict = {
            "machine": {"cores": CORES, "python": sys.version.split()[0]},
            "params": {"n": args.n, "delay_s": args.delay, "size": [1600, 1200]},
            "parts": {},
        }
        self.tmp = Path(tempfile.mkdtemp(prefix="imgpipe-bench-"))
        self.procs: list[Popen] = []
        self._photos: list[bytes] | None = None
        self._img_base: str | None = None
        self._s3: str | None = None
        self._moto: Popen | None = None
        self._img_proc: Popen | None = None
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    # -- inputs
    def photos(self) -> list[bytes]:
        if self._photos is None:
            distinct = photo_set(HERE / ".cache", min(16, self.args.n))
            self._photos = [distinct[i % len(distinct)] for i in range(self.args.n)]
        return self._photos

    def image_base(self) -> str:
        if self._img_base is None:
            root = self.tmp / "images"
            root.mkdir()
            for i, data in enumerate(photo_set(HERE / ".cache", min(16, self.args.n))):
                (root / f"p{i}.jpg").write_bytes(data)
            (root / "small.jpg").write_bytes(make_photo(99, (64, 48), quality=80))
            proc, self._img_base = start_image_server(root, self.args.delay)
            self.procs.append(proc)
            self._img_proc = proc
        return self._img_base

    def urls(self, n: int | None = None) -> list[str]:
        n = n or self.args.n
        k = min(16, self.args.n)
        return [f"{self.image_base()}/u{i}/p{i % k}.jpg" for i in range(n)]

    def s3(self) -> str:
        if self._s3 is None:
            proc, self._s3 = start_moto()
            self.procs.append(proc)
            self._moto = proc
        return self._s3

    def bucket(self, name: str) -> str:
        import boto3

        boto3.client("s3", endpoint_url=self.s3(), region_name="us-east-1").create_bucket(Bucket=name)
        return name

    def record(self, part: str, **values) -> None:
        values["load"] = load()
        self.results["parts"][part] = values
        shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in values.items()}
        print(f"  [{part}] {shown}", flush=True)

    # -- 1. the seed's serial loop
    def part_baseline(self) -> None:
        import boto3
        import httpx
        from PIL import Image

        urls, bucket = self.urls(), self.bucket("baseline")
        bytes_in = 0
        t0 = time.perf_counter()
        for i, url in enumerate(urls):
            data = httpx.get(url, timeout=30).content  # a new connection per image, like requests.get
            bytes_in += len(data)
            img = Image.open(io.BytesIO(data)).convert("RGB")
            out = io.BytesIO()
            img.save(out, "JPEG", quality=50)
            s3 = boto3.client("s3", endpoint_url=self.s3(), region_name="us-east-1")  # new client per image
            s3.put_object(Bucket=bucket, Key=f"out/{i}.jpg", Body=out.getvalue(), ContentType="image/jpeg")
        dt = time.perf_counter() - t0
        self.record("1_baseline", images=len(urls), seconds=dt, img_s=len(urls) / dt, mb_s=mb(bytes_in) / dt)

    # -- 7. bytes at equal perceptual score per format (bench/formats.py)
    def part_formats(self) -> None:
        from bench.formats import measure

        r = measure(photo_set(HERE / ".cache", 4), (1000, 750))
        self.record("7_formats", **r)

    # -- 2. codec limit
    def part_codec(self) -> None:
        photos = self.photos()
        bytes_in = sum(len(p) for p in photos)
        out = {}
        for name, fn in (("pillow", codec_pillow), ("fast", codec_fast), ("ours", codec_ours)):
            for kind in ("process", "thread"):
                pool = ProcessPoolExecutor(CORES) if kind == "process" else ThreadPoolExecutor(CORES)
                with pool:
                    dt = _time_pool(pool, fn, photos)
                out[f"{name}_{kind}_img_s"] = len(photos) / dt
                out[f"{name}_{kind}_mb_s"] = mb(bytes_in) / dt
        with ThreadPoolExecutor(1) as one:
            out["fast_1core_img_s"] = len(photos) / _time_pool(one, codec_fast, photos)
        out["limit_img_s"] = max(out["fast_process_img_s"], out["fast_thread_img_s"])
        self.record("2_codec_limit", images=len(photos), **out)

    # -- 3. our real compressed_images code path, one partition
    def part_pipeline(self) -> None:
        for pool in self.args.pools.split(","):
            self._pipeline_once(pool)

    # -- 8. profiles (issue 16): the default profile against the old path, and the three-rendition catalogue
    # profile against its own codec limit, in one run
    def part_profiles(self) -> None:
        from image_pipeline.domain.profiles import BUILTIN

        catalogue = BUILTIN["catalogue"]
        photos = self.photos()
        best = 0.0
        for kind in ("thread", "process"):
            pool = ProcessPoolExecutor(CORES) if kind == "process" else ThreadPoolExecutor(CORES)
            with pool:
                best = max(best, len(photos) / _time_pool(pool, codec_catalogue, photos))
        old = self._pipeline_once("thread", tag="8_default_unscored", score_every=0)
        new = self._pipeline_once("thread", tag="8_default_scored")  # carries SciPy's import (a fresh process)
        warm = self._pipeline_once("thread", tag="8_default_scored_warm")  # imported, as the warm-fork launcher has
        cat = self._pipeline_once("thread", tag="8_catalogue", profile=catalogue.canonical_json())
        self.record(
            "8_profiles",
            catalogue_limit_img_s=best,
            catalogue_img_s=cat,
            catalogue_x_limit=cat / best,
            default_img_s=new,
            old_path_img_s=old,
            default_x_old_path=new / old,
            default_warm_img_s=warm,
            default_warm_x_old_path=warm / old,
        )

    def _pipeline_once(
        self, pool: str, tag: str | None = None, score_every: int | None = None, profile: str | None = None
    ) -> float:
        from image_pipeline.domain.catalog.csv_input import CsvLimits
        from image_pipeline.domain.db.engine import make_engine, session_factory, upgrade
        from image_pipeline.domain.db.requests import create_request
        from image_pipeline.domain.images.url_policy import FetchPolicy
        from image_pipeline.domain.images.worker import ProcessOptions
        from image_pipeline.domain.keys import input_key
        from image_pipeline.domain.objects.s3 import S3Store, make_s3_client
        from image_pipeline.domain.request.chunks import compress_request
        from image_pipeline.domain.request.context import RequestContext
        from image_pipeline.domain.request.status_cache import StatusCache
        from image_pipeline.domain.request.validate import validate_request
        from image_pipeline.domain.settings import Settings, parse_allow

        defaults = Settings(_env_file=None)
        name = (tag or f"pipeline-{pool}").replace("_", "-")
        db = f"sqlite:///{self.tmp / f'{name}.db'}"
        upgrade(db)
        engine = make_engine(db)
        bucket = self.bucket(name)
        host = self.image_base().removeprefix("http://")
        ctx = RequestContext(
            sessions=session_factory(engine),
            store=S3Store(make_s3_client(self.s3(), "us-east-1"), bucket, "http://cdn.example"),
            cache=StatusCache(None),
            policy=FetchPolicy(allow=parse_allow(host)),
            options=ProcessOptions(
                quality=50,
                concurrency=defaults.fetch_concurrency,
                per_host=defaults.per_host_concurrency,
                encode_pool=pool,
                encode_workers=defaults.encode_workers,
                score_every=defaults.score_every if score_every is None else score_every,
                # n photos cycle through 16 distinct ones: the sync memory would encode 16 (part 9 is its bench)
                sync_memory=False,
            ),
            limits=CsvLimits(),
            api_base_url="http://api.example",
        )
        urls = self.urls()
        rid = str(uuid.uuid4())
        csv = "S.No.,Product Name,Input Image Urls\n" + "".join(f'{i},P{i},"{u}"\n' for i, u in enumerate(urls))
        ctx.store.put(input_key(rid), csv.encode())
        with ctx.sessions() as s:
            create_request(
                s, request_id=rid, owner="bench", input_key=input_key(rid), webhook_url=None, filename="b.csv",
                row_count=len(urls), url_count=len(urls), profile=profile,
            )  # fmt: skip
        validate_request(ctx, rid)
        cpu0 = self._cpu()
        profiler = None
        if self.args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.002, async_mode="disabled")
            profiler.start()
        t0 = time.perf_counter()
        chunks = compress_request(ctx, rid)
        dt = time.perf_counter() - t0
        if profiler is not None:
            profiler.stop()
            out = HERE / f"profile-pipeline-{pool}.txt"
            out.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
            print(f"  profile written to {out}", flush=True)
        cpu = {k: round(v - cpu0[k], 2) for k, v in self._cpu().items()}
        engine.dispose()
        done, bytes_in, bytes_out = (sum(getattr(c, f) for c in chunks) for f in ("done", "bytes_in", "bytes_out"))
        assert done == len(urls), chunks
        self.record(
            tag or f"3_pipeline_{pool}",
            images=len(urls),
            seconds=dt,
            img_s=len(urls) / dt,
            mb_s=mb(bytes_in) / dt,
            ratio_out_in=bytes_out / bytes_in,
            cpu_s=cpu,  # where the 2 cores went: our process (+ its pool), the image server, moto S3
        )
        return len(urls) / dt

    def _cpu(self) -> dict[str, float]:
        """CPU seconds used so far by this process (+ reaped children) and by each server we started."""
        import resource

        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = {"pipeline": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime}
        tick = os.sysconf("SC_CLK_TCK")
        for name, proc in (("image_server", self._img_proc), ("moto_s3", self._moto)):
            try:
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                out[name] = (int(fields[11]) + int(fields[12])) / tick
            except (AttributeError, OSError):
                out[name] = 0.0
        return out

    # -- 4 and 5: the `make up` stack
    def stack(self) -> tuple[str, WebhookReceiver]:
        if getattr(self, "_stack", None):
            return self._stack
        hook = WebhookReceiver().start()
        api_port, ui_port = free_port(), free_port()
        host = self.image_base().removeprefix("http://")
        env = dict(
            os.environ,
            IMGPIPE_DATA_DIR=str(self.tmp / "stack"),
            IMGPIPE_API_PORT=str(api_port),
            IMGPIPE_UI_PORT=str(ui_port),
            IMGPIPE_API_KEYS=KEY,
            IMGPIPE_FETCH_ALLOW=f"{host},{hook.allow}",
            # Parts 4 and 5 upload the same images again and again: they measure processing, not the
            # sync memory's reuse (part 9).
            IMGPIPE_SYNC_MEMORY="false",
        )
        for k in ("IMGPIPE_DATABASE_URL", "IMGPIPE_S3_BUCKET", "IMGPIPE_REDIS_URL", "DAGSTER_HOME"):
            env.pop(k, None)
        log = self.tmp / "stack.log"
        self._stack_proc = spawn([sys.executable, "-m", "image_pipeline.cli.devstack"], env=env, output=log, cwd=ROOT)
        self.procs.append(self._stack_proc)
        api = f"http://127.0.0.1:{api_port}"
        wait_http(f"{api}/api/check_db_connection", 120)
        wait_http(f"http://127.0.0.1:{ui_port}/server_info", 120)
        print(f"  stack up (log {log})", flush=True)
        self._stack = (api, hook)
        return self._stack

    def _upload(self, api: str, urls: list[str], webhook: str, per_row: int = 1) -> str:
        return upload_urls(api, KEY, urls, webhook, per_row)

    def part_e2e(self) -> None:
        import httpx

        api, hook = self.stack()
        rng = random.Random(4)
        small = self.urls(3)
        self._upload_and_wait(api, hook, small, 120)  # warm-up, not counted
        lat, phases = [], []
        for _ in range(self.args.uploads):
            time.sleep(rng.uniform(0.3, 2.5))
            wall0, t0 = time.time(), time.monotonic()
            rid = self._upload(api, small, hook.url)
            took = hook.wait_for_request(rid, 120).at - t0
            lat.append(took)
            phases.append(self._phases(rid, wall0, wall0 + took))
        lat.sort()
        p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
        self.record(
            "4_e2e_3_images",
            uploads=len(lat),
            p50_s=statistics.median(lat),
            p95_s=p95,
            min_s=lat[0],
            max_s=lat[-1],
            all_s=[round(x, 3) for x in lat],
        )
        self.record("4_e2e_phases_median_s", **_median_phases(phases))
        # N images, timed from run start (status turns `processing` once validated_csv ran).
        urls = self.urls()
        t_up = time.monotonic()
        rid = self._upload(api, urls, hook.url, per_row=10)
        t_start = None
        while t_start is None:
            doc = httpx.get(f"{api}/api/status/{rid}", headers={"Authorization": f"Bearer {KEY}"}).json()
            if doc["status"] != "pending":
                t_start = time.monotonic()
            time.sleep(0.05)
        t_end = hook.wait_for_request(rid, 600).at
        doc = httpx.get(f"{api}/api/status/{rid}", headers={"Authorization": f"Bearer {KEY}"}).json()
        assert doc["progress"]["done"] == len(urls), doc
        self.record(
            "4_e2e_n_images",
            images=len(urls),
            upload_to_webhook_s=t_end - t_up,
            from_run_start_s=t_end - t_start,
            img_s=len(urls) / (t_end - t_start),
        )

    def _phases(self, rid: str, wall0: float, wall_hook: float) -> dict[str, float]:
        """Where one upload's latency went, from the run's Dagster event log (wall-clock timestamps)."""
        import dagster as dg

        if getattr(self, "_instance", None) is None:
            self._instance = dg.DagsterInstance.from_config(str(self.tmp / "stack" / "dagster"))
        [run] = self._instance.get_runs(dg.RunsFilter(tags={"imgpipe/request_id": rid}), limit=1)
        marks: dict[str, float] = {}
        steps: dict[str, float] = {}
        started: dict[str, float] = {}
        for entry in self._instance.all_logs(run.run_id):
            ev = entry.dagster_event
            if ev is None:
                continue
            kind = ev.event_type.name
            marks.setdefault(kind, entry.timestamp)
            if kind == "STEP_START":
                steps[ev.step_key] = started[ev.step_key] = entry.timestamp
            elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and ev.step_key in steps:
                steps[ev.step_key] = entry.timestamp - steps[ev.step_key]
        out = {
            "api_to_enqueued": marks["RUN_ENQUEUED"] - wall0,
            "queue": marks["RUN_STARTING"] - marks["RUN_ENQUEUED"],
            "launch_to_run_start": marks["RUN_START"] - marks["RUN_STARTING"],
            "run_start_to_first_step": marks["STEP_START"] - marks["RUN_START"],
            **{f"step {k.removeprefix('compressed_images.').split('[')[0]}": v for k, v in steps.items()},
        }
        # The webhook is sent by the last step, before the run's own success event is written.
        last = max(started, key=started.get)
        out[f"step {last.split('.')[-1]}"] = wall_hook - started[last]
        out["steps_total"] = sum(v for k, v in out.items() if k.startswith("step "))
        return out

    def _upload_and_wait(self, api: str, hook: WebhookReceiver, urls: list[str], timeout: float) -> float:
        t0 = time.monotonic()
        rid = self._upload(api, urls, hook.url)
        return hook.wait_for_request(rid, timeout).at - t0

    def part_memory(self) -> None:
        api, hook = self.stack()
        for n in [int(x) for x in self.args.mem_urls.split(",")]:
            urls = [f"{self.image_base()}/small/{i}.jpg" for i in range(n)]
            t0 = time.monotonic()
            rid = self._upload(api, urls, hook.url, per_row=10)
            peak, peak_tree, seen = 0, 0, set()
            while True:
                for pid, hwm, tree in _run_worker_hwm(self._stack_proc.pid):
                    seen.add(pid)
                    peak, peak_tree = max(peak, hwm), max(peak_tree, tree)
                try:
                    t_end = hook.wait_for_request(rid, 0.2).at
                    break
                except TimeoutError:
                    if time.monotonic() - t0 > 3600:
                        raise
            self.record(
                f"5_memory_{n}_urls",
                urls=n,
                peak_rss_mb=peak / 1024,
                peak_rss_with_pool_mb=peak_tree / 1024,
                run_workers_seen=len(seen),
                seconds=t_end - t0,
                img_s=n / (t_end - t0),
            )

    # -- 6. API accept rate
    def part_api(self) -> None:
        port = free_port()
        env = dict(
            os.environ,
            IMGPIPE_DATA_DIR=str(self.tmp / "api"),
            IMGPIPE_API_KEYS=KEY,
            IMGPIPE_API_PORT=str(port),
            IMGPIPE_UPLOAD_RATE_LIMIT="off",  # capacity, not the per-key limit (default 60/minute)
        )
        for k in ("IMGPIPE_DATABASE_URL", "IMGPIPE_S3_BUCKET", "IMGPIPE_REDIS_URL", "IMGPIPE_DAGSTER_URL"):
            env.pop(k, None)
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--port", str(port)]
        cmd += ["--log-level", "warning", "--no-access-log"]
        proc = spawn(cmd, env=env, output=self.tmp / "api.log", cwd=ROOT)
        try:
            api = f"http://127.0.0.1:{port}"
            wait_http(f"{api}/api/check_db_connection")
            ok, failed, ids, dt = asyncio.run(_load(api, self.args.api_seconds, self.args.api_concurrency))
        finally:
            stop(proc, grace=15)
        from sqlalchemy import create_engine, text

        engine = create_engine(f"sqlite:///{self.tmp / 'api' / 'app.db'}")
        with engine.connect() as c:
            stored = {r[0] for r in c.execute(text("select id from requests"))}
        engine.dispose()
        lost = len(set(ids) - stored)
        self.record(
            "6_api_uploads",
            accepted=ok,
            refused_or_errors=failed,
            seconds=dt,
            uploads_s=ok / dt,
            lost=lost,
            concurrency=self.args.api_concurrency,
            note="one uvicorn process, embedded SQLite + local objects, no run launch (fast path off)",
        )

    def part_sync(self) -> None:
        """A catalogue uploaded twice, 1 % changed in between: with validators (304s) and without (hash path)."""
        from bench.sync import describe, sync_pair

        per_host = self.args.sync_per_host
        for mode in self.args.sync_modes.split(","):
            r = sync_pair(self.args.sync_urls, self.args.sync_delay, mode, HERE / ".cache", self.tmp, per_host=per_host)
            name = f"9_sync_{mode}" + (f"_per_host_{per_host}" if per_host else "")
            self.record(name, **r, delay_s=self.args.sync_delay)
            print("  " + describe(self.results["parts"][name]), flush=True)

    def close(self) -> None:
        if getattr(self, "_stack", None):
            self._stack[1].close()
        for p in reversed(self.procs):
            stop(p, grace=15)


def _proc_table() -> dict[int, tuple[int, bytes, int, int]]:
    """pid -> (ppid, cmdline, VmRSS kB, VmHWM kB) of every process we can read."""
    table = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            status = dict(
                line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
            )
            rss, hwm = (int(status.get(k, "0 kB").split()[0]) for k in ("VmRSS", "VmHWM"))
            table[int(pid)] = (int(status["PPid"]), cmd, rss, hwm)
        except (OSError, KeyError, ValueError):
            continue
    return table


def _run_worker_hwm(root: int) -> list[tuple[int, int, int]]:
    """(pid, peak RSS kB of the run worker, current RSS kB of the worker + its descendants) per live run
    of the stack started as process `root` (other stacks on the machine are not counted).

    A run worker is a fork of the warm launcher's forkserver (`make up`) or a `dagster api execute_run`
    process (Dagster's default launcher); descendants are its codec pool processes, if any.
    """
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_rest) in table.items():
        children.setdefault(ppid, []).append(pid)
    ours, todo = set(), [root]
    while todo:
        pid = todo.pop()
        ours.add(pid)
        todo += children.get(pid, [])
    servers = {pid for pid in ours if b"multiprocessing.forkserver" in table.get(pid, (0, b""))[1]}
    workers = [pid for pid in ours if pid in table and (table[pid][0] in servers or b"execute_run" in table[pid][1])]

    def tree_rss(pid: int) -> int:
        return table[pid][2] + sum(tree_rss(c) for c in children.get(pid, []))

    return [(pid, table[pid][3], tree_rss(pid)) for pid in workers]


def _median_phases(phases: list[dict[str, float]]) -> dict[str, float]:
    keys = dict.fromkeys(k for p in phases for k in p)
    return {k: round(statistics.median(p[k] for p in phases if k in p), 3) for k in keys}


async def _load(api: str, seconds: float, concurrency: int) -> tuple[int, int, list[str], float]:
    """`concurrency` keep-alive connections each POSTing a one-row CSV back to back for `seconds`.

    Raw asyncio streams with one pre-built request: an HTTP client library costs ~1 ms of CPU per
    request, which on a 2-core machine would be measuring the load generator, not the API."""
    from urllib.parse import urlsplit

    host, port = urlsplit(api).hostname, urlsplit(api).port
    boundary = "benchboundary7MA4YWxk"
    csv = b'S.No.,Product Name,Input Image Urls\r\n1,P,"https://img.example.com/a.jpg"\r\n'
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + csv
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST /api/upload HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    request = head + body
    ids: list[str] = []
    failed = 0
    stop = time.perf_counter() + seconds

    async def user() -> None:
        nonlocal failed
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < stop:
                writer.write(request)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                answer = await reader.readexactly(length)
                if status_line.split()[1] == b"202":
                    ids.append(json.loads(answer)["request_id"])
                else:
                    failed += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(concurrency)))
    return len(ids), failed, ids, time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------- report
def table(results: dict) -> str:
    p = results["parts"]
    base = p.get("1_baseline", {}).get("img_s")
    limit = p.get("2_codec_limit", {}).get("limit_img_s")
    rows = [("measure", "img/s", "MB/s", "x seed", "x codec limit", "load 1/5/15 min")]

    def add(name: str, img_s: float | None, mb_s: float | None, ld: str) -> None:
        rows.append(
            (
                name,
                f"{img_s:.1f}" if img_s else "",
                f"{mb_s:.1f}" if mb_s else "",
                f"{img_s / base:.2f}" if img_s and base else "",
                f"{img_s / limit:.2f}" if img_s and limit else "",
                ld,
            )
        )

    if "1_baseline" in p:
        add("1 seed: serial loop, new S3 client each", base, p["1_baseline"]["mb_s"], p["1_baseline"]["load"])
    if "2_codec_limit" in p:
        c = p["2_codec_limit"]
        for name in ("pillow", "fast", "ours"):
            for kind in ("process", "thread"):
                add(f"2 codec {name}, {CORES} {kind}es" if kind == "process" else f"2 codec {name}, {CORES} threads",
                    c[f"{name}_{kind}_img_s"], c[f"{name}_{kind}_mb_s"], c["load"])  # fmt: skip
    for key in sorted(k for k in p if k.startswith("3_pipeline")):
        add(f"3 our pipeline ({key.split('_')[-1]} pool)", p[key]["img_s"], p[key]["mb_s"], p[key]["load"])
    if "4_e2e_n_images" in p:
        add("4 make up: N images from run start", p["4_e2e_n_images"]["img_s"], None, p["4_e2e_n_images"]["load"])
    lines = [" | ".join(f"{c:<42}" if i == 0 else f"{c:>9}" for i, c in enumerate(r)) for r in rows]
    if "4_e2e_3_images" in p:
        e = p["4_e2e_3_images"]
        lines.append(
            f"4 make up: upload -> webhook, 3 images: p50 {e['p50_s']:.2f} s, p95 {e['p95_s']:.2f} s "
            f"over {e['uploads']} uploads (load {e['load']})"
        )
    for key in sorted(k for k in p if k.startswith("5_memory")):
        m = p[key]
        lines.append(f"5 run worker peak RSS, {m['urls']} URLs: {m['peak_rss_mb']:.0f} MB (load {m['load']})")
    if "6_api_uploads" in p:
        a = p["6_api_uploads"]
        lines.append(
            f"6 API: {a['uploads_s']:.0f} uploads/s accepted ({a['accepted']} in {a['seconds']:.1f} s, "
            f"{a['lost']} lost, {a['refused_or_errors']} refused) (load {a['load']})"
        )
    if "8_profiles" in p:
        q = p["8_profiles"]
        lines.append(
            f"8 catalogue profile (3 renditions): {q['catalogue_img_s']:.1f} img/s = {q['catalogue_x_limit']:.2f} x "
            f"its codec limit {q['catalogue_limit_img_s']:.1f}; default profile {q['default_img_s']:.1f} img/s = "
            f"{q['default_x_old_path']:.2f} x the unscored old path {q['old_path_img_s']:.1f}, "
            f"{q['default_warm_x_old_path']:.2f} x with SciPy already imported (load {q['load']})"
        )
    if "7_formats" in p:
        from bench.formats import report

        lines.append("7 " + report(p["7_formats"]))
    for key in sorted(k for k in p if k.startswith("9_sync")):
        from bench.sync import describe

        lines.append(describe(p[key]))
    return "\n".join(lines)


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = results["parts"]
    bars: list[tuple[str, float]] = []
    if "1_baseline" in p:
        bars.append(("seed loop", p["1_baseline"]["img_s"]))
    if "2_codec_limit" in p:
        c = p["2_codec_limit"]
        bars += [("Pillow limit", c["pillow_process_img_s"]), ("simplejpeg limit", c["limit_img_s"])]
    for key in sorted(k for k in p if k.startswith("3_pipeline")):
        bars.append((f"ours ({key.split('_')[-1]})", p[key]["img_s"]))
    if "4_e2e_n_images" in p:
        bars.append(("make up run", p["4_e2e_n_images"]["img_s"]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    if bars:
        axes[0].barh([b[0] for b in bars], [b[1] for b in bars], color="#4477aa")
        axes[0].set_xlabel("images / s (1600x1200, higher is better)")
        axes[0].invert_yaxis()
    if "4_e2e_3_images" in p:
        axes[1].hist(p["4_e2e_3_images"]["all_s"], bins=12, color="#cc6677")
        axes[1].set_xlabel("upload -> webhook, 3 images (s)")
        axes[1].set_ylabel("uploads")
    fig.suptitle(f"image-pipeline bench ({CORES} cores, {results['params']['delay_s'] * 1000:.0f} ms per request)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="1,2,3,4,5,6,7,8,9", help="comma-separated parts to run (1-9)")
    ap.add_argument("-n", type=int, default=200, help="photos (1600x1200) for parts 1-4")
    ap.add_argument("--delay", type=float, default=0.05, help="image server delay per request, seconds")
    ap.add_argument("--pools", default="thread,process", help="codec pools for part 3 (thread, process, auto)")
    ap.add_argument("--uploads", type=int, default=12, help="3-image uploads timed in part 4")
    ap.add_argument("--mem-urls", default="10000", help="request sizes for part 5, e.g. 10000,100000")
    ap.add_argument("--api-seconds", type=float, default=10.0)
    ap.add_argument("--api-concurrency", type=int, default=16)
    ap.add_argument("--sync-urls", type=int, default=10_000, help="catalogue size for part 9 (sync)")
    ap.add_argument("--sync-delay", type=float, default=0.01, help="part 9 origin latency per request (200 or 304), s")
    ap.add_argument("--sync-per-host", type=int, default=None, help="part 9 per-host limit (default: the setting's)")
    ap.add_argument("--sync-modes", default="validators,none", help="part 9 origins: validators (304s), none (hash)")
    ap.add_argument("--profile", action="store_true", help="pyinstrument profile of part 3 -> bench/profile-*.txt")
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops every server we started
    parts = {int(x) for x in args.parts.split(",")}
    bench = Bench(args)
    print(f"bench: {CORES} cores, n={args.n}, delay={args.delay * 1000:.0f} ms, load {load()}", flush=True)
    steps = {
        1: bench.part_baseline,
        2: bench.part_codec,
        3: bench.part_pipeline,
        4: bench.part_e2e,
        5: bench.part_memory,
        6: bench.part_api,
        7: bench.part_formats,
        8: bench.part_profiles,
        9: bench.part_sync,
    }
    try:
        for k in sorted(parts):
            print(f"part {k} ...", flush=True)
            steps[k]()
    finally:
        bench.close()
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    merged = {**previous, **bench.results, "parts": {**previous.get("parts", {}), **bench.results["parts"]}}
    args.out.write_text(json.dumps(merged, indent=2))
    chart(merged, args.out.with_suffix(".png"))
    print()
    print(table(merged))
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
