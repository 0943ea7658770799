"""Loopback HTTP servers the tests and the benchmarks share: an image server, a webhook receiver, the
routes that make an image server slow or hostile, and a canary that counts connection attempts.

The tests run `ImageServer` in threads of the test process and add files and routes per test; the
benchmarks run `serve_directory` (the same server over a directory, with a fixed delay per image) in
a process of its own (`start_image_server`), so that serving images does not share their GIL.

    python -m tests.support.servers images ROOT PORT DELAY    # what start_image_server runs
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from subprocess import DEVNULL, Popen

from image_pipeline.cli.processes import spawn, wait_http
from tests.support.paths import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


Route = Callable[[BaseHTTPRequestHandler], None]


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a benchmark opens hundreds of connections at once


class LoopbackServer:
    """`handler_cls` served on `host` (127.0.0.1, or another address of 127/8) at `port` (or a free one)
    by a daemon thread."""

    def __init__(self, handler_cls: type[BaseHTTPRequestHandler], port: int = 0, host: str = "127.0.0.1") -> None:
        self.httpd = _HTTPServer((host, port), handler_cls)
        self.host = host
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def allow(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send_body(h: BaseHTTPRequestHandler, body: bytes, content_type: str = "image/jpeg") -> None:
    h.send_response(200)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def send_empty(h: BaseHTTPRequestHandler, code: int) -> None:
    h.send_response(code)
    h.send_header("Content-Length", "0")
    h.end_headers()


@dataclass
class ImageServer:
    """Serves `files[path] = (content_type, body)`; `routes[path]` may take over a request entirely, and
    `fallback` takes every other path (404 without one). `hits` lists every path asked for, in order."""

    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)
    fallback: Route | None = None
    hits: list[str] = field(default_factory=list)
    server: LoopbackServer | None = None

    def start(self, port: int = 0) -> ImageServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                outer.hits.append(path)
                if path in outer.routes:
                    outer.routes[path](self)
                elif path in outer.files:
                    ctype, body = outer.files[path]
                    send_body(self, body, ctype)
                elif outer.fallback:
                    outer.fallback(self)
                else:
                    send_empty(self, 404)

        self.server = LoopbackServer(Handler, port)
        return self

    def add(self, path: str, body: bytes, ctype: str = "image/jpeg") -> str:
        self.files[path] = (ctype, body)
        return self.url(path)

    def url(self, path: str) -> str:
        assert self.server
        return self.server.base + path

    @property
    def allow(self) -> str:
        assert self.server
        return self.server.allow

    def close(self) -> None:
        if self.server:
            self.server.close()


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Records every POST; `responses` are answered in order, then 200. An entry is a status code
    (3xx answers carry `Location: /elsewhere`) or "hang": hold the request for `hang_s` seconds."""

    responses: list[int | str] = field(default_factory=list)
    hang_s: float = 30.0
    deliveries: list[Delivery] = field(default_factory=list)
    server: LoopbackServer | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> WebhookReceiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer._cond:
                    outer.deliveries.append(
                        Delivery({k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                    )
                    code = outer.responses.pop(0) if outer.responses else 200
                    outer._cond.notify_all()
                if code == "hang":
                    time.sleep(outer.hang_s)
                    code = 200
                self.send_response(code)
                if 300 <= code < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = LoopbackServer(Handler)
        return self

    @property
    def url(self) -> str:
        assert self.server
        return self.server.base + "/hook"

    @property
    def allow(self) -> str:
        assert self.server
        return self.server.allow

    def wait_for(self, n: int = 1, timeout: float = 60.0) -> list[Delivery]:
        """Until `n` deliveries have arrived; all of them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.deliveries) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {n} webhook deliveries, got {len(self.deliveries)}")
                self._cond.wait(left)
            return list(self.deliveries)

    def wait_for_request(self, request_id: str, timeout: float) -> Delivery:
        """The first delivery about `request_id`; TimeoutError if none arrives in `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for d in self.deliveries:
                    if _request_id(d.body) == request_id:
                        return d
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no webhook for {request_id} in {timeout} s")
                self._cond.wait(left)

    def close(self) -> None:
        if self.server:
            self.server.close()


def _request_id(body: bytes) -> str | None:
    try:
        return json.loads(body).get("request_id")
    except (ValueError, AttributeError):
        return None


# --- routes for an ImageServer: slow or hostile answers ------------------------------------------------


def delayed_route(body: bytes, delay_s: float, content_type: str = "image/jpeg") -> Route:
    """An ImageServer route answering `body` after `delay_s` seconds."""

    def route(h: BaseHTTPRequestHandler) -> None:
        time.sleep(delay_s)
        send_body(h, body, content_type)

    return route


class FlakyRoute:
    """An ImageServer route answering each of `answers` in turn (a status code, or (code, headers)),
    then `body` with 200 for ever; `at` holds the time.monotonic() of every request it got, `wall` its time.time()."""

    def __init__(self, answers: list[int | tuple[int, dict[str, str]]], body: bytes, delay_s: float = 0.0) -> None:
        self.answers, self.body, self.delay_s = list(answers), body, delay_s
        self.at: list[float] = []
        self.wall: list[float] = []  # time.time() of the same requests (for a report)
        self._lock = threading.Lock()

    def __call__(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.at.append(time.monotonic())
            self.wall.append(time.time())
            answer = self.answers.pop(0) if self.answers else None
        time.sleep(self.delay_s)
        if answer is None:
            send_body(h, self.body)
            return
        code, headers = answer if isinstance(answer, tuple) else (answer, {})
        h.send_response(code)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", "0")
        h.end_headers()

    @property
    def gaps(self) -> list[float]:
        """Seconds between one request and the next."""
        return [b - a for a, b in zip(self.at, self.at[1:], strict=False)]


def redirect_to(location: str, code: int = 302) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(code)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return route


def trickle(h: BaseHTTPRequestHandler) -> None:
    """A route promising 100,000 bytes and sending one every 0.1 s."""
    h.send_response(200)
    h.send_header("Content-Type", "image/jpeg")
    h.send_header("Content-Length", "100000")
    h.end_headers()
    try:
        for _ in range(600):  # 1 byte every 0.1 s: each read is fast, the whole would take 10 000 s
            h.wfile.write(b"x")
            h.wfile.flush()
            time.sleep(0.1)
    except OSError:
        pass


def encoded(body: bytes, encoding: str) -> Route:
    """A route answering `body` as is, labelled with `Content-Encoding: encoding` (e.g. a gzip bomb)."""

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Encoding", encoding)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return route


class Canary:
    """A TCP listener on a non-allowed loopback port that counts connection attempts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


# --- the benchmarks' image server: a directory, a fixed delay, a process of its own ---------------------


def serve_directory(root: Path, delay: float, port: int = 0) -> ImageServer:
    """An ImageServer of the files in `root` by name: /<any path>/<name> answers `name`, /small/<any>
    answers small.jpg, each after `delay` seconds; /health answers at once."""
    files = {p.name: p.read_bytes() for p in Path(root).iterdir() if p.is_file()}

    def by_name(h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?")[0]
        body = files.get("small.jpg" if path.startswith("/small/") else path.rsplit("/", 1)[-1])
        if body is None:
            send_empty(h, 404)
            return
        time.sleep(delay)
        send_body(h, body)

    server = ImageServer(fallback=by_name)
    server.files["/health"] = ("text/plain", b"ok")
    return server.start(port)


def start_image_server(root: Path, delay: float) -> tuple[Popen, str]:
    """`serve_directory(root, delay)` in its own process (own process group); returns it and its base URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "tests.support.servers", "images", str(root), str(port), str(delay)]
    proc = spawn(cmd, cwd=ROOT, output=DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/health", procs=[proc])
    return proc, base


if __name__ == "__main__":
    if sys.argv[1] == "images":
        serve_directory(Path(sys.argv[2]), float(sys.argv[4]), int(sys.argv[3])).server.thread.join()
