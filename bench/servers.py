"""Loopback servers for the benchmark, each in its own process so it does not share our GIL:
an image server adding a fixed delay per request, a moto S3 server, and a webhook receiver (thread)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP error status: it answers
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer in {timeout} s") from exc
            time.sleep(0.2)


class Proc:
    """A child process in its own process group, stopped with the group."""

    def __init__(self, cmd: list[str], env: dict | None = None, log: Path | None = None, cwd: Path | None = None):
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        self.p = subprocess.Popen(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=cwd,
        )

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()


def start_image_server(root: Path, delay: float) -> tuple[Proc, str]:
    """Serves files under `root` (any path /small/<n>.jpg maps to small.jpg) after `delay` seconds."""
    port = free_port()
    proc = Proc([sys.executable, "-m", "bench.servers", "images", str(root), str(port), str(delay)])
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/health")
    return proc, base


def start_moto() -> tuple[Proc, str]:
    port = free_port()
    proc = Proc([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)])
    url = f"http://127.0.0.1:{port}"
    wait_http(url)
    return proc, url


class WebhookReceiver:
    """Records (arrival time, request_id) of every POST, and its body and headers (signature checks)."""

    def __init__(self) -> None:
        self.events: list[tuple[float, dict]] = []
        self.raw: list[tuple[bytes, dict[str, str]]] = []
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:  # noqa: ANN002
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.monotonic()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with outer.cond:
                    outer.events.append((now, json.loads(body or b"{}")))
                    outer.raw.append((body, dict(self.headers.items())))
                    outer.cond.notify_all()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait_for(self, request_id: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, ev in self.events:
                    if ev.get("request_id") == request_id:
                        return t
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no webhook for {request_id} in {timeout} s")
                self.cond.wait(left)

    def delivery(self, request_id: str) -> tuple[bytes, dict[str, str]]:
        """Body and headers of the first webhook for `request_id` (after wait_for)."""
        with self.cond:
            return next(
                raw for (_, ev), raw in zip(self.events, self.raw, strict=True) if ev.get("request_id") == request_id
            )

    def close(self) -> None:
        self.httpd.shutdown()


def _serve_images(root: str, port: int, delay: float) -> None:
    files = {p.name: p.read_bytes() for p in Path(root).iterdir() if p.is_file()}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a) -> None:  # noqa: ANN002
            pass

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?")[0]
            if path == "/health":
                body = b"ok"
            else:
                name = "small.jpg" if path.startswith("/small/") else path.rsplit("/", 1)[-1]
                body = files.get(name)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256

    Server(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "images":
        _serve_images(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))


def upload_urls(api: str, key: str, urls: list[str], webhook: str, per_row: int = 1, timeout: float = 60) -> str:
    """POST a CSV of `urls` (`per_row` per product) to the API; returns the request id."""
    import httpx

    rows = [urls[i : i + per_row] for i in range(0, len(urls), per_row)]
    csv = "S.No.,Product Name,Input Image Urls\n" + "".join(f'{i},P{i},"{", ".join(r)}"\n' for i, r in enumerate(rows))
    r = httpx.post(
        f"{api}/api/upload",
        headers={"Authorization": f"Bearer {key}"},
        files={"file": ("b.csv", csv.encode())},
        data={"webhook_url": webhook},
        timeout=timeout,
    )
    assert r.status_code == 202, r.text
    return r.json()["request_id"]
