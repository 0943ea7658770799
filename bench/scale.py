"""`make bench-scale`: the scale-out configuration measured with real processes on loopback: the API,
dagster-daemon (and webserver), PostgreSQL storage, real `dagster-celery` workers on the machine's
RabbitMQ, a moto S3 server and a loopback image server.

    python -m bench.scale                        # every part, modest defaults (23 min at load ~10 on 2 cores)
    python -m bench.scale --parts a,e --photos 640
    python -m bench.scale --help

Parts:
  a  throughput of one fan-out request vs Celery workers: 1 and 2 workers pinned to a core each
     (`taskset -c N`, `--pool=solo`), CPU-bound (1600x1200 photos, no delay); 1, 2, 4 workers with a
     fixed delay per image request; compared with the codec limit of `make bench` part 2
  b  orchestration cost per chunk step (trivial 64x48 chunks of 1 URL) for in_process, multiprocess
     and celery: (wall(2N chunks) - wall(N chunks)) / N
  c  Dagster event-log rows for a 10,000-URL request at the default chunk size (1,000)
  d  small-request latency (3 images, below the fan-out threshold): the `make up` stack (same method
     as `make bench` part 4) and the scale-out configuration (IMGPIPE_EXECUTOR=celery, PostgreSQL)
  e  the same 3-image latency with CeleryRunLauncher (deploy/celery/dagster.yaml): whole runs execute
     in already-warm Celery workers; also the CPU seconds each run costs its worker (load-independent)
  launcher  (only when named) WarmForkRunLauncher vs Dagster's DefaultRunLauncher: two stacks, same
     build and instance file but the run_launcher, 3-image upload -> webhook interleaved A B B A ...,
     with each run's phases from its event log (bench/launcher.py)

Prints one table and writes bench/scale_results.json. Every figure is recorded with the machine's load
average (os.getloadavg) at the time: the machine may be shared. A benchmark, not a test: it checks only
that the work was really done (request completed with every URL done; which workers ran chunks).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from subprocess import Popen

import httpx

from bench.photos import make_photo, photo_set
from bench.servers import start_moto, upload_urls
from image_pipeline.cli.processes import spawn, stop, wait_http
from tests.support.servers import WebhookReceiver, free_port, start_image_server

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
CORES = os.cpu_count() or 1
KEY = "bench-scale-key-0123456789"  # IMGPIPE_API_KEY_MIN_CHARS (16)
SECRET = "whsec_x1sV65BgB+pP5FcFEQEu5eNrIfSPrsGDwm0xp0AyAEs="
PG_ADMIN = os.environ.get("IMGPIPE_BENCH_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
BROKER = os.environ.get("IMGPIPE_BENCH_BROKER_URL", "pyamqp://guest:guest@127.0.0.1:5672//")
REDIS = os.environ.get("IMGPIPE_TEST_REDIS_URL", "redis://127.0.0.1:6379/10")
CHUNK_STEP = "compressed_images.compress_chunk["


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


TICK = os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU-seconds the whole machine has spent busy (every core, every process: /proc/stat)."""
    user, nice, system, idle, iowait, *rest = (int(x) for x in Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + sum(rest)) / TICK


def process_cpu_s(pid: int) -> float:
    """utime + stime of one live process, and of its children it has waited for (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(x) for x in fields[11:15]) / TICK


class CpuSampler:
    """Samples, every `every` seconds in a thread, the machine's busy CPU-seconds and those of `pids`,
    so CPU use can be read for any window afterwards (e.g. the chunk phase, from the event log)."""

    def __init__(self, pids: list[int], every: float = 0.1) -> None:
        self.pids, self.every = pids, every
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        own = 0.0
        for pid in self.pids:
            try:
                own += process_cpu_s(pid)
            except OSError:
                pass
        self.samples.append((time.time(), machine_busy_s(), own))

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def __enter__(self) -> CpuSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def used(self, t0: float, t1: float) -> tuple[float, float]:
        """(machine, pids) CPU-seconds between the samples nearest t0 and t1."""
        a = min(self.samples, key=lambda s: abs(s[0] - t0))
        b = min(self.samples, key=lambda s: abs(s[0] - t1))
        return b[1] - a[1], b[2] - a[2]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


# ---------------------------------------------------------------------------------------------- postgres
def _admin():
    from sqlalchemy import create_engine

    return create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})


def create_db(prefix: str) -> str:
    from sqlalchemy import text

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    engine = _admin()
    with engine.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def drop_db(url: str) -> None:
    from sqlalchemy import text

    engine = _admin()
    with engine.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    engine.dispose()


# ---------------------------------------------------------------------------------------------- one stack
class Stack:
    """One deployment configuration: app DB + Dagster DB (PostgreSQL), DAGSTER_HOME with a dagster.yaml,
    the API and dagster-daemon (optionally the webserver, for the API's fast path), and Celery workers
    that can be added and stopped while it runs. Every process is in its own group, stopped on close."""

    def __init__(
        self,
        name: str,
        tmp: Path,
        env: dict[str, str],
        *,
        instance_yaml: Path = ROOT / "dagster.yaml",
        warm_launcher: bool = False,
        webserver: bool = False,
    ) -> None:
        self.name = name
        self.dir = tmp / name
        self.dir.mkdir()
        self.queue = f"imgpipe-bench-{name}-{uuid.uuid4().hex[:6]}"
        self.run_queue = self.queue + "-runs"
        self.procs: dict[str, Popen] = {}
        self.workers: list[str] = []
        self.started = 0
        self.dbs: list[str] = []
        self.env = {"DAGSTER_HOME": str(self.dir / "dagster_home")}
        try:
            self._boot(env, instance_yaml, warm_launcher, webserver)
        except BaseException:
            self.close()  # nothing left behind when a stack fails to come up
            raise

    def _boot(self, env: dict[str, str], instance_yaml: Path, warm_launcher: bool, webserver: bool) -> None:
        from image_pipeline.dagster_plugins.warm_fork_launcher import WARM_LAUNCHER_YAML

        self.app_db = create_db("imgpipe_bench_app")
        self.dbs.append(self.app_db)
        self.dagster_db = create_db("imgpipe_bench_dagster")
        self.dbs.append(self.dagster_db)
        home = self.dir / "dagster_home"
        home.mkdir()
        shutil.copyfile(instance_yaml, home / "dagster.yaml")
        if warm_launcher:
            with open(home / "dagster.yaml", "a") as f:
                f.write(WARM_LAUNCHER_YAML)
        api_port, ui_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{api_port}"
        ui = f"http://127.0.0.1:{ui_port}"
        self.env = dict(
            os.environ,
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            DAGSTER_HOME=str(home),
            IMGPIPE_DAGSTER_PG_URL=self.dagster_db,
            IMGPIPE_DATABASE_URL=self.app_db,
            IMGPIPE_REDIS_URL=REDIS,
            IMGPIPE_API_KEYS=KEY,
            IMGPIPE_API_PORT=str(api_port),
            IMGPIPE_WEBHOOK_SECRET=SECRET,
            IMGPIPE_DATA_DIR=str(self.dir / "data"),
            IMGPIPE_CELERY_BROKER_URL=BROKER,
            IMGPIPE_CELERY_BACKEND_URL="rpc://",
            IMGPIPE_CELERY_QUEUE=self.queue,
            IMGPIPE_CELERY_RUN_QUEUE=self.run_queue,
            **({"IMGPIPE_DAGSTER_URL": ui} if webserver else {}),
        )
        self.env.update(env)
        from image_pipeline.dagster_plugins.prepare_storage import create_dagster_storage

        create_dagster_storage(home, self.env)
        self._start(
            "api", [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--port", str(api_port)]
        )
        self._start("daemon", [str(BIN / "dagster-daemon"), "run", "-m", "image_pipeline.definitions"])
        if webserver:
            self._start("webserver", [str(BIN / "dagster-webserver"), "-m", "image_pipeline.definitions",
                                      "-p", str(ui_port)])  # fmt: skip
        wait_http(f"{self.api}/api/check_db_connection", 120)
        if webserver:
            wait_http(f"{ui}/server_info", 120)

    def _start(self, name: str, cmd: list[str]) -> None:
        self.procs[name] = spawn(cmd, env=self.env, output=self.dir / f"{name}.log", cwd=ROOT)

    def log(self, name: str, chars: int = 3000) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def add_worker(self, cpu: int | None = None, queues: tuple[str, ...] = ()) -> str:
        """A `dagster-celery` worker (`--pool=solo`: one task at a time), pinned to `cpu` if given."""
        self.started += 1  # a fresh name each time: a stopped worker's pidbox queue lingers a moment
        name = f"{self.queue}-w{self.started}"
        cmd = [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app"]
        cmd += ["-y", str(ROOT / "deploy/celery/celery.yaml"), "-n", name]
        for q in queues or (self.queue,):
            cmd += ["-q", q]
        cmd += ["--", "--pool=solo", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        if cpu is not None:
            cmd = ["taskset", "-c", str(cpu), *cmd]
        self._start(name, cmd)
        self.workers.append(name)
        deadline = time.monotonic() + 90
        while "ready." not in self.log(name, 100_000):
            if self.procs[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {name} did not start:\n{self.log(name)}")
            time.sleep(0.2)
        return name

    def cpu_s(self, name: str) -> float:
        """CPU seconds (user + system) used so far by the process group of `name` (a worker: the
        `dagster-celery` wrapper and the `celery` process under it). A run's CPU in its worker is the
        difference around the run: unlike wall time, it barely moves with the machine's load."""
        group, tick, total = self.procs[name].pid, os.sysconf("SC_CLK_TCK"), 0.0
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group:  # pgrp (fields after the command name: state, ppid, pgrp, ...)
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def stop_workers(self) -> None:
        for name in self.workers:
            stop(self.procs.pop(name), grace=15)
        self.workers = []
        self.kill_strays(lambda cmd: b"celery" in cmd)

    def kill_strays(self, match=lambda cmd: True) -> None:
        """Kill what outlives its process group: `celery` under `dagster-celery` finishing its task, run
        processes (their own session, by design: a run survives a daemon restart). Ours are the
        processes whose environment has this stack's DAGSTER_HOME."""
        for pid in self.stack_pids(match):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def worker_pids(self) -> list[int]:
        return self.stack_pids(lambda cmd: b"celery" in cmd)

    def stack_pids(self, match=lambda cmd: True) -> list[int]:
        mark = f"DAGSTER_HOME={self.env['DAGSTER_HOME']}".encode()
        pids = []
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if pid != os.getpid() and mark in env and match(cmd):
                pids.append(pid)
        return pids

    def close(self) -> None:
        for proc in reversed(list(self.procs.values())):
            stop(proc, grace=15)
        self.kill_strays()
        for url in reversed(self.dbs):
            try:
                drop_db(url)
            except Exception as exc:
                print(f"  (could not drop {url}: {exc})", flush=True)

    # -- requests
    def upload(self, urls: list[str], webhook: str, per_row: int = 10) -> str:
        return upload_urls(self.api, KEY, urls, webhook, per_row, timeout=120)

    def process(self, urls: list[str], hook: WebhookReceiver, timeout: float = 1800) -> dict:
        """Upload, wait for the webhook, check every image was done; returns the run's figures."""
        t0, wall0 = time.monotonic(), time.time()
        rid = self.upload(urls, hook.url)
        try:
            t_hook = hook.wait_for_request(rid, timeout).at
        except TimeoutError:
            raise RuntimeError(f"{self.name}: no webhook for {rid}\ndaemon:\n{self.log('daemon')}") from None
        doc = httpx.get(f"{self.api}/api/status/{rid}", headers={"Authorization": f"Bearer {KEY}"}).json()
        assert doc["status"] == "completed" and doc["progress"]["done"] == len(urls), doc
        fig = self.run_figures(rid)
        # Where the time went: seconds from the upload to each run-level event, and to the webhook.
        fig["timeline_s"] = {k: round(v - wall0, 3) for k, v in fig.pop("run_events").items()}
        fig["timeline_s"]["webhook"] = round(t_hook - t0, 3)
        return {"request_id": rid, "upload_to_webhook_s": t_hook - t0, **fig}

    def run_figures(self, request_id: str) -> dict:
        """From Dagster's own storage: the run's wall time, its chunk phase and event-log rows."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.dagster_db)
        deadline = time.monotonic() + 120
        while True:  # the webhook goes out from the run's last step, just before the run ends
            with engine.connect() as c:
                run_id, job, start, end = c.execute(
                    text(
                        "select r.run_id, r.pipeline_name, r.start_time, r.end_time from runs r join run_tags t"
                        " on t.run_id = r.run_id where t.key = 'dagster/partition' and t.value = :rid"
                        " order by r.create_timestamp desc limit 1"
                    ),
                    {"rid": request_id},
                ).one()
            if end is not None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        with engine.connect() as c:
            rows = c.execute(text("select count(*) from event_logs where run_id = :r"), {"r": run_id}).scalar()
            steps = c.execute(
                text(
                    "select step_key, dagster_event_type, extract(epoch from timestamp) from event_logs"
                    " where run_id = :r and step_key like :k"
                    " and dagster_event_type in ('STEP_START', 'STEP_SUCCESS')"
                ),
                {"r": run_id, "k": CHUNK_STEP + "%"},
            ).all()
            run_events = dict(
                c.execute(
                    text(
                        "select dagster_event_type, min(extract(epoch from timestamp)) from event_logs"
                        " where run_id = :r and step_key is null and dagster_event_type like 'PIPELINE_%'"
                        " group by dagster_event_type"
                    ),
                    {"r": run_id},
                ).all()
            )
            texts = c.execute(
                text("select event from event_logs where run_id = :r and dagster_event_type = 'ENGINE_EVENT'"),
                {"r": run_id},
            ).scalars()
            ran_on = sorted({w for e in texts for w in self.workers if w in e})
        engine.dispose()
        starts = {k: t for k, ev, t in steps if ev == "STEP_START"}
        ends = {k: t for k, ev, t in steps if ev == "STEP_SUCCESS"}
        durations = [ends[k] - starts[k] for k in ends if k in starts]
        out = {
            "run_id": run_id,
            "job": job,
            "run_s": (end - start) if start and end else None,
            "event_rows": rows,
            "chunks": len(ends),
            "workers_used": len(ran_on),
            "run_events": {k.removeprefix("PIPELINE_").lower(): float(v) for k, v in run_events.items()},
        }
        if starts and ends:
            out["chunk_phase"] = (float(min(starts.values())), float(max(ends.values())))  # epoch seconds
            out["chunk_phase_s"] = out["chunk_phase"][1] - out["chunk_phase"][0]
            out["chunk_step_median_s"] = float(statistics.median(durations))
        return out


# ---------------------------------------------------------------------------------------------- the bench
class ScaleBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="imgpipe-bench-scale-"))
        self.results: dict = {
            "machine": {"cores": CORES, "python": sys.version.split()[0]},
            "params": {k: v for k, v in vars(args).items() if k != "out"},
            "parts": {},
        }
        self.procs: list[Popen] = []
        self.stacks: list[Stack] = []
        for k, v in (
            ("AWS_ACCESS_KEY_ID", "bench"),
            ("AWS_SECRET_ACCESS_KEY", "bench"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ):
            os.environ.setdefault(k, v)  # fmt: skip
        root = self.tmp / "images"
        root.mkdir()
        for i, data in enumerate(photo_set(HERE / ".cache", 16)):
            (root / f"p{i}.jpg").write_bytes(data)
        (root / "small.jpg").write_bytes(make_photo(99, (64, 48), quality=80))
        proc, self.fast_images = start_image_server(root, 0.0)
        self.procs.append(proc)
        proc, self.slow_images = start_image_server(root, args.delay)
        self.procs.append(proc)
        proc, self.s3 = start_moto()
        self.procs.append(proc)
        self.hook = WebhookReceiver().start()

    def record(self, part: str, **values) -> None:
        values["load"] = load()
        self.results["parts"][part] = values
        shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in values.items() if k != "all_s"}
        print(f"  [{part}] {shown}", flush=True)

    def stack(self, name: str, env: dict[str, str], **kw) -> Stack:
        import boto3

        bucket = f"scale-{name}"
        boto3.client("s3", endpoint_url=self.s3, region_name="us-east-1").create_bucket(Bucket=bucket)
        allow = ",".join(u.removeprefix("http://") for u in (self.fast_images, self.slow_images))
        base = {
            "IMGPIPE_S3_BUCKET": bucket,
            "IMGPIPE_S3_ENDPOINT_URL": self.s3,
            "IMGPIPE_FETCH_ALLOW": f"{allow},{self.hook.allow}",
        }
        t0 = time.monotonic()
        s = Stack(name, self.tmp, {**base, **env}, **kw)
        self.stacks.append(s)
        print(f"  stack {name} up in {time.monotonic() - t0:.1f} s ({s.dir})", flush=True)
        return s

    def drop(self, s: Stack) -> None:
        s.close()
        self.stacks.remove(s)

    def photos(self, base: str, n: int, tag: str) -> list[str]:
        return [f"{base}/{tag}/{i}/p{i % 16}.jpg" for i in range(n)]

    def small(self, n: int, tag: str) -> list[str]:
        return [f"{self.fast_images}/small/{tag}-{i}.jpg" for i in range(n)]

    def warm(self, s: Stack, chunks: int) -> None:
        """A throw-away fan-out request, so every worker has imported the code location before timing."""
        size = int(s.env["IMGPIPE_CHUNK_SIZE"])
        s.process(self.small(max(chunks * size, int(s.env["IMGPIPE_FANOUT_THRESHOLD"])), uuid.uuid4().hex), self.hook)

    # -- a. throughput vs workers
    def part_a(self) -> None:
        a = self.args
        s = self.stack(
            "throughput",
            {
                "IMGPIPE_EXECUTOR": "celery",
                "IMGPIPE_CHUNK_SIZE": str(a.chunk_size),
                "IMGPIPE_FANOUT_THRESHOLD": str(a.chunk_size),
                "IMGPIPE_PER_HOST_CONCURRENCY": str(a.per_host),
            },
            warm_launcher=True,
        )
        try:
            # (kind, cores each worker is pinned to, or None per unpinned worker); workers are added as the
            # series grows, and the pinned ones replaced by unpinned ones for the I/O-bound series.
            series: list[tuple[str, list[int | None]]] = [("cpu", [0]), ("cpu", [0, 1])]
            series += [("io", [None] * int(n)) for n in a.io_workers.split(",")]
            pins: list[int | None] = []
            for kind, wanted in series:
                if pins != wanted[: len(pins)]:
                    s.stop_workers()
                    pins = []
                for cpu in wanted[len(pins) :]:
                    s.add_worker(cpu)
                    pins.append(cpu)
                self.warm(s, 2 * len(s.workers))
                base = self.fast_images if kind == "cpu" else self.slow_images
                urls = self.photos(base, a.photos, uuid.uuid4().hex)
                with CpuSampler(s.worker_pids()) as cpu:
                    fig = s.process(urls, self.hook)
                busy, workers_cpu = cpu.used(*fig.pop("chunk_phase"))
                label = f"a_{kind}_{len(wanted)}w" + ("_pinned" if kind == "cpu" else "")
                self.record(
                    label,
                    workers=len(wanted),
                    pinned_cpus=wanted if kind == "cpu" else None,
                    delay_s=0.0 if kind == "cpu" else a.delay,
                    images=len(urls),
                    chunk_size=a.chunk_size,
                    img_s=len(urls) / fig["chunk_phase_s"],
                    run_img_s=len(urls) / fig["run_s"],
                    # CPU per image during the chunk phase: in the Celery workers, and on the whole machine
                    # (workers + moto + image server + PostgreSQL + RabbitMQ + daemon + anything else).
                    worker_cpu_ms_per_img=1000 * workers_cpu / len(urls),
                    machine_cpu_ms_per_img=1000 * busy / len(urls),
                    **{k: fig[k] for k in ("chunk_phase_s", "run_s", "chunks", "workers_used", "chunk_step_median_s")},
                )
        finally:
            self.drop(s)
        p = self.results["parts"]
        if "a_cpu_1w_pinned" in p and "a_cpu_2w_pinned" in p:
            one, two = p["a_cpu_1w_pinned"], p["a_cpu_2w_pinned"]
            # What this machine allows two workers: every core busy at the CPU the machine spent per image
            # with two workers (theirs + moto, image server, PostgreSQL, ... which share the cores here),
            # relative to the one-worker figure.
            bound = CORES / (two["machine_cpu_ms_per_img"] / 1000) / one["img_s"]
            self.record(
                "a_ratio_2_vs_1_pinned",
                ratio=two["img_s"] / one["img_s"],
                ratio_bound_on_this_machine=bound,
                worker_cpu_ms_per_img_1w=one["worker_cpu_ms_per_img"],
                worker_cpu_ms_per_img_2w=two["worker_cpu_ms_per_img"],
                other_cpu_ms_per_img_2w=two["machine_cpu_ms_per_img"] - two["worker_cpu_ms_per_img"],
            )
        self.codec_limit()

    def codec_limit(self) -> None:
        """`make bench` part 2 (the codec on every core, no I/O), run here on the same photos."""
        from bench.run import Bench

        ns = argparse.Namespace(n=self.args.codec_n, delay=0.0)
        b = Bench(ns)
        try:
            b.part_codec()
        finally:
            b.close()
        c = b.results["parts"]["2_codec_limit"]
        self.record(
            "a_codec_limit",
            source="bench.run part 2 (run now)",
            limit_img_s=c["limit_img_s"],
            one_core_img_s=c["fast_1core_img_s"],
            images=c["images"],
        )

    # -- b. orchestration cost per chunk step
    def part_b(self) -> None:
        n = self.args.chunks
        for executor in self.args.executors.split(","):
            env = {"IMGPIPE_EXECUTOR": executor, "IMGPIPE_CHUNK_SIZE": "1", "IMGPIPE_FANOUT_THRESHOLD": "1"}
            s = self.stack(f"cost-{executor}", env, warm_launcher=True)
            parallel = {"in_process": 1, "multiprocess": CORES, "celery": self.args.cost_workers}[executor]
            try:
                if executor == "celery":
                    for _ in range(self.args.cost_workers):
                        s.add_worker()
                self.warm(s, 4)
                one = s.process(self.small(n, uuid.uuid4().hex), self.hook)
                two = s.process(self.small(2 * n, uuid.uuid4().hex), self.hook)
            finally:
                self.drop(s)
            self.record(
                f"b_cost_{executor}",
                chunks=[n, 2 * n],
                workers=self.args.cost_workers if executor == "celery" else None,
                run_s=[one["run_s"], two["run_s"]],
                chunk_phase_s=[one["chunk_phase_s"], two["chunk_phase_s"]],
                # the marginal wall time of one more chunk step: the run's fixed costs cancel out
                per_chunk_s=(two["run_s"] - one["run_s"]) / n,
                per_chunk_phase_s=(two["chunk_phase_s"] - one["chunk_phase_s"]) / n,
                parallel_steps=parallel,
                chunk_step_median_s=two["chunk_step_median_s"],
                event_rows=[one["event_rows"], two["event_rows"]],
            )

    # -- c and d (scale-out configuration): event-log rows, small-request latency
    def part_cd(self, parts: set[str]) -> None:
        env = {"IMGPIPE_EXECUTOR": "celery"}  # default chunk size (1000) and fan-out threshold (1000)
        s = self.stack("events", env, warm_launcher=True, webserver="d" in parts)
        try:
            for _ in range(2):
                s.add_worker()
            if "c" in parts:  # rows, not time: no warm-up
                urls = self.small(self.args.urls, uuid.uuid4().hex)
                fig = s.process(urls, self.hook)
                self.record(
                    "c_event_rows",
                    urls=len(urls),
                    chunks=fig["chunks"],
                    event_rows=fig["event_rows"],
                    rows_per_10k_urls=fig["event_rows"] * 10_000 / len(urls),
                    run_s=fig["run_s"],
                    workers_used=fig["workers_used"],
                )
            if "d" in parts:
                self.latency("d_3_images_scaleout_config", s, "IMGPIPE_EXECUTOR=celery, Postgres, warm-fork launcher")
        finally:
            self.drop(s)

    def latency(self, part: str, s: Stack, config: str, run_worker: str | None = None) -> None:
        """Upload -> webhook for a 3-image CSV, as `make bench` part 4: one warm-up, then uploads spaced
        0.3-2.5 s apart. `run_worker`: the worker that executes the runs (part e), whose CPU per run is
        recorded too."""
        rng = random.Random(4)
        small = self.photos(self.slow_images, 3, "lat")
        s.process(small, self.hook)  # warm-up, not counted
        lat, jobs, timelines, cpu = [], set(), [], []
        for _ in range(self.args.uploads):
            time.sleep(rng.uniform(0.3, 2.5))
            cpu0 = s.cpu_s(run_worker) if run_worker else 0.0
            fig = s.process(small, self.hook)
            if run_worker:
                cpu.append(s.cpu_s(run_worker) - cpu0)
            lat.append(fig["upload_to_webhook_s"])
            jobs.add(fig["job"])
            timelines.append(fig["timeline_s"])
        keys = sorted(
            {k for t in timelines for k in t}, key=lambda k: statistics.median(t.get(k, 0) for t in timelines)
        )
        self.record(
            part,
            config=config,
            jobs=sorted(jobs),
            uploads=len(lat),
            p50_s=statistics.median(lat),
            p95_s=pct(lat, 0.95),
            min_s=min(lat),
            max_s=max(lat),
            all_s=[round(x, 3) for x in lat],
            median_timeline_s={k: round(statistics.median(t[k] for t in timelines if k in t), 3) for k in keys},
            **(
                {"run_worker_cpu_s_p50": statistics.median(cpu), "run_worker_cpu_s": [round(c, 2) for c in cpu]}
                if cpu
                else {}
            ),
        )

    def part_d_make_up(self) -> None:
        """The same 3-image latency on the `make up` stack, through bench.run's own code (part 4)."""
        from bench.run import Bench

        ns = argparse.Namespace(n=16, delay=self.args.delay, uploads=self.args.uploads)
        b = Bench(ns)
        try:
            api, hook = b.stack()
            small = b.urls(3)
            b._upload_and_wait(api, hook, small, 120)  # warm-up
            rng = random.Random(4)
            lat = []
            for _ in range(self.args.uploads):
                time.sleep(rng.uniform(0.3, 2.5))
                lat.append(b._upload_and_wait(api, hook, small, 120))
        finally:
            b.close()
        self.record(
            "d_3_images_make_up",
            config="make up (embedded SQLite, warm-fork launcher, in_process)",
            uploads=len(lat),
            p50_s=statistics.median(lat),
            p95_s=pct(lat, 0.95),
            min_s=min(lat),
            max_s=max(lat),
            all_s=[round(x, 3) for x in lat],
        )

    def part_d_deployment(self) -> None:
        """The same deployment as the scale-out configuration (PostgreSQL, repo dagster.yaml, warm-fork
        launcher, API fast path) with the default executor: what IMGPIPE_EXECUTOR=celery changes alone."""
        s = self.stack("deploy-in-process", {"IMGPIPE_EXECUTOR": "in_process"}, warm_launcher=True, webserver=True)
        try:
            self.latency("d_3_images_deployment_in_process", s, "IMGPIPE_EXECUTOR=in_process, Postgres, warm-fork")
        finally:
            self.drop(s)

    # -- e. CeleryRunLauncher
    def part_e(self) -> None:
        # A result backend every process can read (Redis), not rpc://: run monitoring asks the launcher
        # for the run's task state from the daemon, and under rpc:// only the sender sees it (PENDING to
        # everyone else, and monitoring fails a STARTED run whose worker is not RUNNING).
        env = {"IMGPIPE_EXECUTOR": "celery", "IMGPIPE_CELERY_BACKEND_URL": REDIS}
        s = self.stack("launcher", env, instance_yaml=ROOT / "deploy/celery/dagster.yaml", webserver=True)
        try:
            worker = s.add_worker(queues=(s.run_queue,))
            self.latency("e_3_images_celery_run_launcher", s, "CeleryRunLauncher, runs in a warm solo worker", worker)
        finally:
            self.drop(s)

    def close(self) -> None:
        for s in list(self.stacks):
            self.drop(s)
        self.hook.close()
        for p in reversed(self.procs):
            stop(p, grace=15)


# ---------------------------------------------------------------------------------------------- report
def table(results: dict) -> str:
    p = results["parts"]
    lines = [f"{'measure':<58} | {'figure':>28} | load 1/5/15 min"]

    def add(name: str, figure: str, ld: str) -> None:
        lines.append(f"{name:<58} | {figure:>28} | {ld}")

    for key in sorted(k for k in p if k.startswith("a_cpu") or k.startswith("a_io")):
        r = p[key]
        what = f"pinned {r['pinned_cpus']}" if r.get("pinned_cpus") else f"{r['delay_s'] * 1000:.0f} ms/request"
        add(
            f"a {r['workers']} worker(s), {what}, {r['images']} photos",
            f"{r['img_s']:.1f} img/s ({r['workers_used']}w used)",
            r["load"],
        )
    if "a_ratio_2_vs_1_pinned" in p:
        r = p["a_ratio_2_vs_1_pinned"]
        add("a 2 vs 1 pinned workers, CPU-bound (target >= 1.7x)", f"{r['ratio']:.2f}x", r["load"])
        add(
            "a   what 2 cores allow (cores / machine CPU per img, / 1w)",
            f"{r['ratio_bound_on_this_machine']:.2f}x",
            f"worker {r['worker_cpu_ms_per_img_2w']:.1f} + other {r['other_cpu_ms_per_img_2w']:.1f} ms/img",
        )
    if "a_codec_limit" in p:
        r = p["a_codec_limit"]
        add(f"a codec limit ({CORES} cores, make bench part 2)", f"{r['limit_img_s']:.1f} img/s", r["load"])
    for key in sorted(k for k in p if k.startswith("b_cost")):
        r = p[key]
        add(
            f"b wall per extra chunk step, {key.removeprefix('b_cost_')} ({r.get('parallel_steps', 1)} at once)",
            f"run {r['per_chunk_s'] * 1000:.0f} ms, chunks {r.get('per_chunk_phase_s', 0) * 1000:.0f} ms",
            r["load"],
        )
    if "c_event_rows" in p:
        r = p["c_event_rows"]
        add(f"c event-log rows, {r['urls']} URLs / {r['chunks']} chunks (target <= 200 / 10k)",
            f"{r['event_rows']} ({r['rows_per_10k_urls']:.0f} / 10k)", r["load"])  # fmt: skip
    for key, name in (
        ("d_3_images_make_up", "d 3 images upload->webhook, make up"),
        ("d_3_images_deployment_in_process", "d 3 images upload->webhook, Postgres, in_process"),
        ("d_3_images_scaleout_config", "d 3 images upload->webhook, Postgres, celery config"),
        ("e_3_images_celery_run_launcher", "e 3 images upload->webhook, CeleryRunLauncher"),
    ):
        if key in p:
            r = p[key]
            cpu = f", worker CPU {r['run_worker_cpu_s_p50']:.2f} s" if "run_worker_cpu_s_p50" in r else ""
            add(name, f"p50 {r['p50_s']:.2f} s, p95 {r['p95_s']:.2f} s{cpu}", r["load"])
    from bench.launcher import table_rows

    table_rows(p, add)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="a,b,c,d,e", help="comma-separated parts (a-e, launcher)")
    ap.add_argument("--photos", type=int, default=480, help="1600x1200 photos per request in part a")
    ap.add_argument("--chunk-size", type=int, default=120, help="URLs per chunk in part a")
    ap.add_argument("--delay", type=float, default=0.05, help="image server delay per request (part a I/O, d, e)")
    ap.add_argument("--io-workers", default="1,2,4", help="worker counts for the I/O-bound series of part a")
    ap.add_argument("--per-host", type=int, default=64, help="IMGPIPE_PER_HOST_CONCURRENCY in part a")
    ap.add_argument("--codec-n", type=int, default=96, help="photos for the codec limit (part a)")
    ap.add_argument("--chunks", type=int, default=8, help="N in part b (runs of N and 2N one-URL chunks)")
    ap.add_argument("--executors", default="in_process,multiprocess,celery", help="executors for part b")
    ap.add_argument("--cost-workers", type=int, default=2, help="Celery workers in part b")
    ap.add_argument("--urls", type=int, default=10_000, help="URLs (64x48 images) in part c")
    ap.add_argument("--uploads", type=int, default=10, help="3-image uploads timed in parts d and e")
    ap.add_argument("--launcher-uploads", type=int, default=30, help="3-image uploads per launcher (launcher part)")
    ap.add_argument("--launcher-warmup", type=int, default=2, help="uncounted uploads per stack first (launcher)")
    ap.add_argument("--launcher-configs", default="deployment,embedded", help="instance files (launcher part)")
    ap.add_argument("--out", type=Path, default=HERE / "scale_results.json")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops every process we started
    parts = set(args.parts.split(","))
    print(f"bench-scale: {CORES} cores, parts {sorted(parts)}, load {load()}", flush=True)
    bench = ScaleBench(args)
    try:
        if "a" in parts:
            print("part a ...", flush=True)
            bench.part_a()
        if "b" in parts:
            print("part b ...", flush=True)
            bench.part_b()
        if parts & {"c", "d"}:
            print("parts c/d ...", flush=True)
            bench.part_cd(parts)
        if "d" in parts:
            bench.part_d_make_up()
            bench.part_d_deployment()
        if "e" in parts:
            print("part e ...", flush=True)
            bench.part_e()
        if "launcher" in parts:
            from bench.launcher import part_launcher

            print("part launcher ...", flush=True)
            part_launcher(bench)
    finally:
        bench.close()
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    merged = {**previous, **bench.results, "parts": {**previous.get("parts", {}), **bench.results["parts"]}}
    args.out.write_text(json.dumps(merged, indent=2))
    print()
    print(table(merged))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
