"""The Grafana dashboard (deploy/grafana/image-pipeline.json) and its picture (docs/observability-dashboard.png),
both made from the one list of panels below, so the picture shows exactly what the dashboard queries.

    python -m bench.dashboard json             # write the dashboard JSON (a test checks it is current)
    python -m bench.dashboard png --seconds 180  # run `make up`, load it, scrape /metrics, draw the panels

The picture is not a Grafana screenshot (no Grafana on this machine): `png` starts the `make up` stack
(image_pipeline.cli.devstack) on a temporary data dir, sends it a mix of requests (good images, 404s,
an HTML page, a host answering 503, refused CSVs, a wrong key) from loopback servers, scrapes its
/metrics every few seconds, and evaluates each panel's query on those scrapes in Python (the same
rate, sum by and histogram_quantile arithmetic Prometheus does), drawn with matplotlib.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "image-pipeline.json"
PICTURE = ROOT / "docs" / "observability-dashboard.png"
KEY = "dashboard-key-0000000000000000000000"


@dataclass(frozen=True)
class Query:
    """One line of a panel: `kind` rate (a counter's per-second rate), quantile (of a histogram) or gauge."""

    kind: str
    metric: str
    by: tuple[str, ...] = ()
    q: float = 0.0  # quantile
    legend: str = ""

    def promql(self) -> str:
        by = f" by ({', '.join(self.by)})" if self.by else ""
        if self.kind == "rate":
            return f"sum{by} (rate({self.metric}[$__rate_interval]))"
        if self.kind == "quantile":
            le = ", ".join(("le", *self.by))
            return f"histogram_quantile({self.q}, sum by ({le}) (rate({self.metric}_bucket[$__rate_interval])))"
        return f"sum{by} ({self.metric})"

    def legend_format(self) -> str:
        if self.legend:
            return self.legend
        return " ".join("{{" + label + "}}" for label in self.by) or self.metric


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str  # Grafana's unit id
    queries: tuple[Query, ...]


PANELS = (
    Panel("Uploads by outcome", "reqps", (Query("rate", "imgpipe_uploads_total", ("outcome",)),)),
    Panel(
        "Images by status and failure class",
        "ops",
        (Query("rate", "imgpipe_images_total", ("status", "failure_class")),),
    ),
    Panel("Image bytes in and out", "Bps", (Query("rate", "imgpipe_image_bytes_total", ("direction",)),)),
    Panel(
        "Stage latency p95 (fetch, decode, encode, store)",
        "s",
        (Query("quantile", "imgpipe_stage_seconds", ("stage",), 0.95),),
    ),
    Panel(
        "Request duration, upload to final status",
        "s",
        (
            Query("quantile", "imgpipe_request_duration_seconds", (), 0.5, "p50"),
            Query("quantile", "imgpipe_request_duration_seconds", (), 0.95, "p95"),
        ),
    ),
    Panel(
        "API answer time p95 by route",
        "s",
        (Query("quantile", "imgpipe_http_request_duration_seconds", ("route",), 0.95),),
    ),
    Panel("Queue depth (requests not finished)", "short", (Query("gauge", "imgpipe_requests_queued", ("status",)),)),
    Panel(
        "Webhook outbox backlog",
        "short",
        (
            Query("gauge", "imgpipe_webhook_outbox_pending", (), legend="pending"),
            Query("gauge", "imgpipe_webhook_outbox_due", (), legend="due now"),
        ),
    ),
    Panel("Webhook attempts by outcome", "ops", (Query("rate", "imgpipe_webhook_attempts_total", ("outcome",)),)),
)


def dashboard() -> dict:
    """The Grafana dashboard (schema 39): one time series panel per entry of PANELS, three per row."""
    panels = []
    for i, p in enumerate(PANELS):
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": p.title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 8, "x": (i % 3) * 8, "y": (i // 3) * 8},
                "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [
                    {"refId": chr(65 + n), "expr": q.promql(), "legendFormat": q.legend_format()}
                    for n, q in enumerate(p.queries)
                ],
            }
        )
    return {
        "title": "image-pipeline",
        "uid": "image-pipeline",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "tags": ["image-pipeline"],
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}]
        },
        "panels": panels,
    }


def dashboard_text() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


# --- evaluating the queries on scrapes ------------------------------------------------------------------
Samples = dict[tuple[str, tuple], float]


def parse(text: str) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _group(samples: Samples, name: str, by: tuple[str, ...], extra: str | None = None) -> dict[tuple, float]:
    out: dict[tuple, float] = defaultdict(float)
    for (n, labels), v in samples.items():
        if n == name:
            d = dict(labels)
            key = tuple(d.get(b, "") for b in by) + ((float(d["le"]),) if extra else ())
            out[key] += v
    return out


def _quantile(q: float, buckets: dict[float, float]) -> float | None:
    """histogram_quantile: linear interpolation inside the bucket where the rank falls."""
    edges = sorted(buckets)
    total = buckets[edges[-1]] if edges else 0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for le in edges:
        if buckets[le] >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(buckets[le] - below, 1e-12)
        lower, below = le, buckets[le]
    return lower


def evaluate(query: Query, scrapes: list[tuple[float, Samples]], window: float) -> dict[str, list]:
    """Series name -> [(t, value)]: the query at each scrape, rates over the last `window` seconds."""
    series: dict[str, list] = defaultdict(list)
    t0 = scrapes[0][0]
    for i, (t, now) in enumerate(scrapes):
        if query.kind == "gauge":
            for key, v in _group(now, query.metric, query.by).items():
                series[_name(query, key)].append((t - t0, v))
            continue
        j = next((k for k in range(i) if scrapes[k][0] >= t - window), None)
        if j is None:
            continue
        t_then, then = scrapes[j]
        dt = t - t_then
        if query.kind == "rate":
            a, b = _group(now, query.metric, query.by), _group(then, query.metric, query.by)
            for key, v in a.items():
                series[_name(query, key)].append((t - t0, (v - b.get(key, 0.0)) / dt))
        else:
            a = _group(now, query.metric + "_bucket", query.by, "le")
            b = _group(then, query.metric + "_bucket", query.by, "le")
            per: dict[tuple, dict[float, float]] = defaultdict(dict)
            for key, v in a.items():
                per[key[:-1]][key[-1]] = v - b.get(key, 0.0)
            for key, buckets in per.items():
                value = _quantile(query.q, buckets)
                if value is not None:
                    series[_name(query, key)].append((t - t0, value))
    return series


def _name(query: Query, key: tuple) -> str:
    return query.legend or " ".join(str(k) for k in key if k != "") or query.metric


def draw(scrapes: list[tuple[float, Samples]], window: float, out: Path, note: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (len(PANELS) + 2) // 3
    fig, axes = plt.subplots(rows, 3, figsize=(18, 4.2 * rows), facecolor="#111217")
    for ax, panel in zip(axes.flat, PANELS, strict=False):
        ax.set_facecolor("#181b1f")
        for query in panel.queries:
            for name, points in sorted(evaluate(query, scrapes, window).items()):
                if points and any(v for _, v in points):
                    ax.plot([p[0] for p in points], [p[1] for p in points], label=name, linewidth=1.6)
        ax.set_title(f"{panel.title} [{panel.unit}]", color="#d8d9da", fontsize=11, loc="left")
        ax.tick_params(colors="#9fa7b3", labelsize=8)
        ax.grid(color="#2c3235", linewidth=0.6)
        for spine in ax.spines.values():
            spine.set_color("#2c3235")
        ax.set_xlabel("seconds", color="#9fa7b3", fontsize=8)
        if ax.lines:
            ax.legend(fontsize=7, facecolor="#181b1f", labelcolor="#d8d9da", edgecolor="#2c3235", loc="upper left")
    for ax in list(axes.flat)[len(PANELS) :]:
        ax.set_visible(False)
    fig.suptitle(note, color="#d8d9da", fontsize=10, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(out, dpi=80, facecolor=fig.get_facecolor())


# --- the load ----------------------------------------------------------------------------------------
def run_load(seconds: float, interval: float) -> list[tuple[float, Samples]]:
    import httpx

    from bench.photos import make_photo
    from image_pipeline.cli.processes import spawn, stop, wait_http
    from tests.support.servers import ImageServer, WebhookReceiver, free_port

    images = ImageServer().start()
    photos = [images.add(f"/p/{i}.jpg", make_photo(i, (1024, 768))) for i in range(12)]
    html = images.add("/page.html", b"<!doctype html><html><body>not an image</body></html>", "text/html")

    def unavailable(h) -> None:
        h.send_response(503)
        h.send_header("Content-Length", "0")
        h.end_headers()

    images.routes["/busy.jpg"] = unavailable
    missing, busy = images.url("/gone.jpg"), images.url("/busy.jpg")
    hook = WebhookReceiver(responses=[500, 200, 503] * 3).start()  # some deliveries need a retry
    tmp = Path(tempfile.mkdtemp(prefix="imgpipe-dashboard-"))
    api_port, ui_port = free_port(), free_port()
    env = dict(
        os.environ,
        IMGPIPE_DATA_DIR=str(tmp / "data"),
        IMGPIPE_API_PORT=str(api_port),
        IMGPIPE_UI_PORT=str(ui_port),
        IMGPIPE_API_KEYS=KEY,
        IMGPIPE_FETCH_ALLOW=f"{images.allow},{hook.allow}",
        IMGPIPE_WEBHOOK_RETRY_SCHEDULE="5,10,20",
    )
    for k in ("IMGPIPE_DATABASE_URL", "IMGPIPE_S3_BUCKET", "IMGPIPE_REDIS_URL", "DAGSTER_HOME"):
        env.pop(k, None)  # make up's embedded defaults
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # make up's own, under the data dir
    log = tmp / "stack.log"
    proc = spawn([sys.executable, "-m", "image_pipeline.cli.devstack"], env=env, output=log, cwd=ROOT)
    api = f"http://127.0.0.1:{api_port}"
    scrapes: list[tuple[float, Samples]] = []
    try:
        wait_http(f"{api}/api/check_db_connection", 180, procs=[proc], detail=lambda: log.read_text()[-3000:])
        rng = random.Random(17)
        done = threading.Event()

        def load() -> None:
            n = 0
            while not done.is_set():
                n += 1
                urls = rng.sample(photos, rng.randint(2, 6))
                if n % 3 == 0:
                    urls.append(rng.choice([missing, html, busy]))
                rows = "".join(f'{i},P{i},"{u}"\n' for i, u in enumerate(urls, 1))
                body = ("S.No.,Product Name,Input Image Urls\n" + rows).encode()
                if n % 5 == 0:
                    body = b"S.No.,Product Name,Input Image Urls\n1,,not-a-url\n"
                auth = {"Authorization": f"Bearer {KEY if n % 11 else 'wrong-key-00000000'}"}
                try:
                    httpx.post(
                        f"{api}/api/upload",
                        headers=auth,
                        files={"file": ("p.csv", body)},
                        data={"webhook_url": hook.url},
                        timeout=30,
                    )
                except httpx.HTTPError:
                    pass
                done.wait(rng.uniform(1.0, 4.0))

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            scrapes.append((time.monotonic(), parse(httpx.get(f"{api}/metrics", timeout=30).text)))
            time.sleep(interval)
        done.set()
        loader.join(10)
        (tmp / "last-metrics.txt").write_text(httpx.get(f"{api}/metrics", timeout=30).text)
        print(f"last /metrics: {tmp / 'last-metrics.txt'}; stack log: {log}")
    finally:
        stop([proc], grace=15)
        images.close()
        hook.close()
    return scrapes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["json", "png"])
    ap.add_argument("--seconds", type=float, default=180, help="how long to load the stack and scrape (png)")
    ap.add_argument("--interval", type=float, default=3.0, help="seconds between scrapes (png)")
    ap.add_argument("--window", type=float, default=30.0, help="rate window in seconds (png)")
    args = ap.parse_args(argv)
    if args.what == "json":
        DASHBOARD.parent.mkdir(parents=True, exist_ok=True)
        DASHBOARD.write_text(dashboard_text())
        print(f"wrote {DASHBOARD}")
        return 0
    scrapes = run_load(args.seconds, args.interval)
    note = (
        f"image-pipeline dashboard, drawn by bench/dashboard.py from {len(scrapes)} real /metrics scrapes of "
        f"`make up` under a mixed load over {args.seconds:.0f} s (rate window {args.window:.0f} s); not Grafana"
    )
    draw(scrapes, args.window, PICTURE, note)
    print(f"wrote {PICTURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
