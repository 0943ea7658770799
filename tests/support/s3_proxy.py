"""A loopback proxy in front of the suite's S3 server (Swift) that adds two behaviours of AWS S3:

- `deny_missing`: a GET or HEAD of a missing object answers 403 AccessDenied, as AWS does when the
  credentials lack `s3:ListBucket` (S3 then may not reveal whether the key exists);
- `fail_puts`: the next N object PUTs answer 503 SlowDown (S3's transient throttling error).

Everything else is passed through unchanged (SigV4 headers included), so boto3 speaks the real
protocol to it.
"""

from __future__ import annotations

import http.client
import os
import ssl
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from tests.support.servers import LoopbackServer

_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>'
)
_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class S3Proxy:
    def __init__(self, upstream: str, *, deny_missing: bool = False) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.https = parts.scheme == "https"
        self.upstream_port = parts.port or (443 if self.https else 80)
        self.deny_missing = deny_missing
        self.fail_puts = 0
        self.failed_puts = 0
        self.denied = 0
        self._lock = threading.Lock()
        self.server: LoopbackServer | None = None

    def start(self) -> S3Proxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a) -> None:
                return None

            def _answer(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                is_object = urlsplit(self.path).path.strip("/").count("/") >= 1  # /bucket/key...
                if self.command == "PUT" and is_object:
                    with proxy._lock:
                        if proxy.fail_puts > 0:
                            proxy.fail_puts -= 1
                            proxy.failed_puts += 1
                            self._answer(503, _SLOW_DOWN)
                            return
                conn = proxy._connect()
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    if proxy.deny_missing and is_object and self.command in ("GET", "HEAD") and resp.status == 404:
                        with proxy._lock:
                            proxy.denied += 1
                        self._answer(403, _DENIED)
                        return
                    self.send_response(resp.status)
                    head = self.command == "HEAD"  # a HEAD's Content-Length is the object's: keep it
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP and (head or k.lower() != "content-length"):
                            self.send_header(k, v)
                    if not head:
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = LoopbackServer(Handler)
        return self

    def _connect(self) -> http.client.HTTPConnection:
        if not self.https:
            return http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=30)
        # The session's Swift serves https with a self-signed certificate (AWS_CA_BUNDLE names it).
        context = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE"))
        return http.client.HTTPSConnection(self.upstream_host, self.upstream_port, timeout=30, context=context)

    @property
    def base(self) -> str:
        assert self.server is not None
        return self.server.base

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
