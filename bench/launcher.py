"""`make bench-scale BENCH_ARGS="--parts launcher"`: WarmForkRunLauncher against Dagster's
DefaultRunLauncher, one stack each, on the same build and the same instance file except `run_launcher`.

Each configuration boots two stacks side by side (API + dagster-webserver, which the API's fast path
launches runs through + dagster-daemon):

  deployment  the repo's dagster.yaml (PostgreSQL run/event storage), PostgreSQL app database, moto S3,
              Redis: the e2e test stack (tests/e2e/stack.py)
  embedded    deploy/embedded/dagster.yaml (SQLite under DAGSTER_HOME), SQLite app database, local
              objects: what `make up` runs

Then it uploads a 3-image CSV (1600x1200 photos from the loopback image server, `--delay` per image
request; fresh URLs each time) to one stack and the other in turn, A B B A A B ..., so drifting machine
load affects both alike, and times POST /api/upload -> the signed webhook received (its signature is
verified). After each upload it reads the run's Dagster event log to split the time:

  accept        POST /api/upload -> 202
  to_enqueued   202 -> RUN_ENQUEUED (fast path: the API's GraphQL launchRun via the webserver)
  queue         RUN_ENQUEUED -> RUN_STARTING (the daemon's next look at the run queue)
  launch        RUN_STARTING -> RUN_START (the launcher: fork of the warm server, or the code server
                spawning `dagster api execute_run`, which imports Dagster and the code location)
  to_first_step RUN_START -> first STEP_START
  steps         first STEP_START -> webhook received (the six steps; the last one sends the webhook)

    python -m bench.scale --parts launcher --launcher-uploads 30
    python -m bench.scale --parts launcher --launcher-configs embedded

A benchmark, not a test: it checks only that the work was really done (request completed, every image
done, webhook signature valid, the instance really uses the launcher it is meant to).
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import yaml

from bench.scale import BIN, KEY, ROOT, SECRET, Stack, load, pct
from bench.servers import upload_urls
from image_pipeline.cli.processes import wait_http
from image_pipeline.dagster_plugins.prepare_storage import environ as storage_environ
from tests.support.servers import free_port

if TYPE_CHECKING:
    from bench.scale import ScaleBench

CONFIGS = {"deployment": ROOT / "dagster.yaml", "embedded": ROOT / "deploy/embedded/dagster.yaml"}
LAUNCHERS = {
    "warm_fork": ("image_pipeline.dagster_plugins.warm_fork_launcher", "WarmForkRunLauncher"),
    "default": ("dagster._core.launcher.default_run_launcher", "DefaultRunLauncher"),
}
PHASES = ["accept", "to_enqueued", "queue", "launch", "to_first_step", "steps"]


def instance_yaml(base: Path, launcher: str) -> str:
    """`base` with its top-level `run_launcher` block (if any) replaced by `launcher`'s."""
    out, skipping = [], False
    for line in base.read_text().splitlines(keepends=True):
        if line.startswith("run_launcher:"):
            skipping = True
            continue
        if skipping and (line.startswith((" ", "\t")) or not line.strip()):
            continue
        skipping = False
        out.append(line)
    module, cls = LAUNCHERS[launcher]
    return "".join(out).rstrip("\n") + f"\n\nrun_launcher:\n  module: {module}\n  class: {cls}\n"


def check_same_but_launcher(texts: dict[str, str]) -> None:
    docs = [yaml.safe_load(t) for t in texts.values()]
    launchers = [d.pop("run_launcher") for d in docs]
    assert all(d == docs[0] for d in docs), "instance files differ beyond run_launcher"
    assert len({yaml.safe_dump(x) for x in launchers}) == len(docs)


def environ(env: dict[str, str]):
    """os.environ with `env`'s IMGPIPE_*/DAGSTER_* values, for a DagsterInstance that resolves `env:`."""
    return storage_environ({k: v for k, v in env.items() if k.startswith(("IMGPIPE_", "DAGSTER_"))})


class LauncherStack(Stack):
    """scale.Stack with the webserver, an instance file given as text, and (config `embedded`) `make up`'s
    storage: SQLite for Dagster and the app, local objects, no Redis, no PostgreSQL."""

    def __init__(self, name: str, tmp: Path, env: dict[str, str], *, config: str, launcher: str, text: str) -> None:
        self.config, self.launcher, self.text = config, launcher, text
        self.instance = None
        (tmp / f"{name}.yaml").write_text(text)
        super().__init__(name, tmp, env, instance_yaml=tmp / f"{name}.yaml", webserver=True)
        with environ(self.env):
            import dagster as dg

            self.instance = dg.DagsterInstance.from_config(self.env["DAGSTER_HOME"])
            got = type(self.instance.run_launcher).__name__
        assert got == LAUNCHERS[launcher][1], f"{name}: instance uses {got}"

    def _boot(self, env: dict[str, str], instance_yaml: Path, warm_launcher: bool, webserver: bool) -> None:
        if self.config == "deployment":
            return super()._boot(env, instance_yaml, warm_launcher, webserver)
        from image_pipeline.dagster_plugins.prepare_storage import create_dagster_storage
        from image_pipeline.domain.db.engine import upgrade

        home = self.dir / "dagster_home"
        home.mkdir()
        shutil.copyfile(instance_yaml, home / "dagster.yaml")
        api_port, ui_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{api_port}"
        ui = f"http://127.0.0.1:{ui_port}"
        base = {k: v for k, v in os.environ.items() if not k.startswith("IMGPIPE_")}
        self.env = dict(
            base,
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            PYTHONUNBUFFERED="1",
            DAGSTER_HOME=str(home),
            IMGPIPE_DATA_DIR=str(self.dir / "data"),
            IMGPIPE_API_KEYS=KEY,
            IMGPIPE_API_PORT=str(api_port),
            IMGPIPE_WEBHOOK_SECRET=SECRET,
            IMGPIPE_DAGSTER_URL=ui,
            **env,
        )
        (self.dir / "data").mkdir()
        create_dagster_storage(home, self.env)
        upgrade(f"sqlite:///{self.dir / 'data' / 'app.db'}")
        # The order `make up` (image_pipeline/cli/devstack.py) starts them in, with the same arguments.
        module = "image_pipeline.definitions"
        self._start("daemon", [str(BIN / "dagster-daemon"), "run", "-m", module])
        self._start("webserver", [str(BIN / "dagster-webserver"), "-m", module, "-h", "127.0.0.1", "-p", str(ui_port)])
        wait_http(f"{ui}/server_info", 180)
        self._start("api", [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app",
                            "--port", str(api_port), "--log-level", "warning", "--no-access-log"])  # fmt: skip
        wait_http(f"{self.api}/api/check_db_connection", 120)

    def close(self) -> None:
        if self.instance is not None:
            self.instance.dispose()
        super().close()

    def timed_upload(self, urls: list[str], hook) -> dict:  # WebhookReceiver
        """Upload -> signed webhook, and where the time went (Dagster run events, wall clock)."""
        from dagster import RunsFilter
        from standardwebhooks.webhooks import Webhook

        wall0, t0 = time.time(), time.monotonic()
        rid = upload_urls(self.api, KEY, urls, hook.url, per_row=1, timeout=120)
        t_accept = time.monotonic()
        try:
            delivery = hook.wait_for_request(rid, 300)
        except TimeoutError:
            raise RuntimeError(f"{self.name}: no webhook for {rid}\ndaemon:\n{self.log('daemon')}") from None
        t_hook = delivery.at  # time.monotonic() when it arrived
        event = Webhook(SECRET).verify(delivery.body, delivery.headers)
        assert event["request_id"] == rid and event["type"] == "request.completed", event
        doc = httpx.get(f"{self.api}/api/status/{rid}", headers={"Authorization": f"Bearer {KEY}"}).json()
        assert doc["status"] == "completed" and doc["progress"]["done"] == len(urls), doc
        hook_wall = wall0 + (t_hook - t0)
        deadline = time.monotonic() + 120
        while True:  # the webhook goes out from the last step, just before the run ends
            runs = self.instance.get_runs(RunsFilter(tags={"imgpipe/request_id": rid}), limit=1)
            if (runs and runs[0].is_finished) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        [run] = runs
        marks: dict[str, float] = {}
        for entry in self.instance.all_logs(run.run_id):
            if entry.dagster_event is not None:
                marks.setdefault(entry.dagster_event.event_type.name, entry.timestamp)
        phases = {
            "accept": t_accept - t0,
            "to_enqueued": marks["RUN_ENQUEUED"] - (wall0 + (t_accept - t0)),
            "queue": marks["RUN_STARTING"] - marks["RUN_ENQUEUED"],
            "launch": marks["RUN_START"] - marks["RUN_STARTING"],
            "to_first_step": marks["STEP_START"] - marks["RUN_START"],
            "steps": hook_wall - marks["STEP_START"],
        }
        return {
            "request_id": rid,
            "s": t_hook - t0,
            "phases": phases,
            "run_end_after_hook_s": marks.get("RUN_SUCCESS", hook_wall) - hook_wall,
            "status": run.status.value,
        }


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_s": statistics.median(values),
        "p90_s": pct(values, 0.9),
        "min_s": min(values),
        "max_s": max(values),
    }


def part_launcher(bench: ScaleBench) -> None:
    a = bench.args
    for config in a.launcher_configs.split(","):
        texts = {name: instance_yaml(CONFIGS[config], name) for name in ("warm_fork", "default")}
        check_same_but_launcher(texts)
        allow = ",".join(u.removeprefix("http://") for u in (bench.fast_images, bench.slow_images))
        env = {"IMGPIPE_FETCH_ALLOW": f"{allow},127.0.0.1:{bench.hook.port}"}
        stacks: dict[str, LauncherStack] = {}
        try:
            for name, text in texts.items():
                extra = dict(env)
                if config == "deployment":
                    import boto3

                    bucket = f"launcher-{config}-{name}".replace("_", "-")
                    boto3.client("s3", endpoint_url=bench.s3, region_name="us-east-1").create_bucket(Bucket=bucket)
                    extra |= {"IMGPIPE_S3_BUCKET": bucket, "IMGPIPE_S3_ENDPOINT_URL": bench.s3}
                t0 = time.monotonic()
                s = LauncherStack(
                    f"launcher-{config}-{name}", bench.tmp, extra, config=config, launcher=name, text=text
                )
                bench.stacks.append(s)
                stacks[name] = s
                print(f"  stack {s.name} up in {time.monotonic() - t0:.1f} s ({s.dir})", flush=True)
            measure(bench, config, stacks)
        finally:
            for s in stacks.values():
                bench.drop(s)


def measure(bench: ScaleBench, config: str, stacks: dict[str, LauncherStack]) -> None:
    a = bench.args
    rng = random.Random(7)
    names = list(stacks)

    def urls() -> list[str]:
        tag = uuid.uuid4().hex[:10]
        return [f"{bench.slow_images}/lat/{tag}/{i}/p{i % 16}.jpg" for i in range(3)]

    for _ in range(a.launcher_warmup):  # not counted: caches, the forkserver, the first run's imports
        for name in names:
            stacks[name].timed_upload(urls(), bench.hook)
    got: dict[str, list[dict]] = {n: [] for n in names}
    load_before = load()
    t_start = time.monotonic()
    for i in range(a.launcher_uploads):
        order = names if i % 2 == 0 else names[::-1]  # A B, B A, A B ...: neither always goes first
        for name in order:
            time.sleep(rng.uniform(0.3, 2.5))  # off the daemon's 0.5 s queue rhythm
            got[name].append(stacks[name].timed_upload(urls(), bench.hook))
        if (i + 1) % 5 == 0:
            p50s = ", ".join(f"{n} {statistics.median(r['s'] for r in got[n]):.2f} s" for n in names)
            print(f"    {i + 1}/{a.launcher_uploads} uploads each: p50 {p50s}, load {load()}", flush=True)
    minutes = (time.monotonic() - t_start) / 60
    for name in names:
        lat = [r["s"] for r in got[name]]
        half = len(lat) // 2
        bench.record(
            f"launcher_{config}_{name}",
            config=config,
            launcher=LAUNCHERS[name][1],
            uploads=len(lat),
            **summary(lat),
            p50_first_half_s=statistics.median(lat[:half]),
            p50_second_half_s=statistics.median(lat[half:]),
            phases_median_s={k: round(statistics.median(r["phases"][k] for r in got[name]), 3) for k in PHASES},
            phases_p90_s={k: round(pct([r["phases"][k] for r in got[name]], 0.9), 3) for k in PHASES},
            all_s=[round(x, 3) for x in lat],
            load_before=load_before,
        )
    w, d = ([r["s"] for r in got[n]] for n in ("warm_fork", "default"))
    pair = [x / y for x, y in zip(d, w, strict=True)]
    bench.record(
        f"launcher_{config}_ratio",
        config=config,
        uploads_each=len(w),
        default_over_warm_p50=statistics.median(d) / statistics.median(w),
        warm_saves_p50_pct=100 * (1 - statistics.median(w) / statistics.median(d)),
        pairwise_ratio_median=statistics.median(pair),
        pairwise_ratio_p10_p90=[round(pct(pair, 0.1), 3), round(pct(pair, 0.9), 3)],
        pairs_where_warm_faster=sum(x > 1 for x in pair),
        launch_phase_saved_s=statistics.median(r["phases"]["launch"] for r in got["default"])
        - statistics.median(r["phases"]["launch"] for r in got["warm_fork"]),
        minutes=round(minutes, 1),
        load_before=load_before,
    )


def table_rows(p: dict, add) -> None:
    for config in CONFIGS:
        for name in LAUNCHERS:
            r = p.get(f"launcher_{config}_{name}")
            if r:
                add(
                    f"launcher {config}: {r['launcher']}, 3 images, n={r['uploads']}",
                    f"p50 {r['p50_s']:.2f} s, p90 {r['p90_s']:.2f} s",
                    r["load"],
                )
                ph = r["phases_median_s"]
                add(
                    f"launcher {config}:   phases (median s)",
                    " ".join(f"{ph[k]:.2f}" for k in PHASES),
                    "/".join(PHASES),
                )
        r = p.get(f"launcher_{config}_ratio")
        if r:
            add(
                f"launcher {config}: default / warm-fork p50 (pairwise median)",
                f"{r['default_over_warm_p50']:.2f}x ({r['pairwise_ratio_median']:.2f}x)",
                r["load"],
            )
