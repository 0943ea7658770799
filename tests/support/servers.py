"""Loopback servers and builders the tests share: an image server, a webhook receiver, image makers."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_image(
    fmt: str = "JPEG", size: tuple[int, int] = (320, 240), mode: str = "RGB", seed: int = 1, **save_kwargs
) -> bytes:
    """A noisy photo-like image (noise keeps JPEG sizes realistic) in any mode/format."""
    import random

    rnd = random.Random(seed)
    base = Image.effect_noise(size, 40).convert("L")
    rgb = Image.merge("RGB", [base.point(lambda v, k=k: (v + k * 60 + rnd.randint(0, 40)) % 256) for k in range(3)])
    img = rgb.convert(mode) if mode != "RGB" else rgb
    buf = io.BytesIO()
    if fmt == "JPEG" and "quality" not in save_kwargs:
        save_kwargs["quality"] = 95
    img.save(buf, fmt, **save_kwargs)
    return buf.getvalue()


Route = Callable[[BaseHTTPRequestHandler], None]


class _Server:
    def __init__(self, handler_cls: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def allow(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class ImageServer:
    """Serves `files[path] = (content_type, body)`; `routes[path]` may take over a request entirely."""

    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    server: _Server | None = None

    def start(self) -> ImageServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a) -> None:  # noqa: ANN002
                pass

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                outer.hits.append(path)
                if path in outer.routes:
                    outer.routes[path](self)
                    return
                if path not in outer.files:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                ctype, body = outer.files[path]
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _Server(Handler)
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


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Records every POST; `responses` are answered in order, then 200. An entry is a status code
    (3xx answers carry `Location: /elsewhere`) or "hang": hold the request for `hang_s` seconds."""

    responses: list[int | str] = field(default_factory=list)
    hang_s: float = 30.0
    deliveries: list[Delivery] = field(default_factory=list)
    server: _Server | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> WebhookReceiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a) -> None:  # noqa: ANN002
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer._cond:
                    outer.deliveries.append(
                        Delivery({k.lower(): v for k, v in self.headers.items()}, body, time.time())
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

        self.server = _Server(Handler)
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
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.deliveries) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {n} webhook deliveries, got {len(self.deliveries)}")
                self._cond.wait(left)
            return list(self.deliveries)


def csv_bytes(rows: list[tuple[str, str, list[str]]]) -> bytes:
    import csv as _csv

    buf = io.StringIO()
    w = _csv.writer(buf)
    w.writerow(["S.No.", "Product Name", "Input Image Urls"])
    for serial, name, urls in rows:
        w.writerow([serial, name, ", ".join(urls)])
    return buf.getvalue().encode()


def delayed_route(
    body: bytes, delay_s: float, content_type: str = "image/jpeg"
) -> Callable[[BaseHTTPRequestHandler], None]:
    """An ImageServer route answering `body` after `delay_s` seconds."""

    def route(h: BaseHTTPRequestHandler) -> None:
        time.sleep(delay_s)
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return route
