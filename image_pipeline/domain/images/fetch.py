"""SSRF-safe HTTP fetching for image downloads and webhook deliveries.

Every hop: only http/https, only allowed ports, no userinfo; the host is resolved once and refused
if ANY address is not globally routable; the connection then goes to the address that was checked, so
DNS rebinding cannot swap it. The request URL keeps the host name (its IDNA A-label): the connection
pool is keyed by name, so a kept-alive TLS connection is only reused for the name its certificate was
checked for, and Host and SNI are that name; a network backend (`_PinnedBackend`) connects each new
connection to the address checked for the request that opens it. Redirects are followed by hand,
re-checking each hop. Bodies are counted while streaming (Content-Length is not trusted) and cut at a
byte limit and a total deadline. Compressed bodies (gzip/deflate) are decoded here: what arrives and
what it decodes to are both bounded by the byte limit, anything after the end of the stream is refused.
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
import time
import zlib
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import httpcore
import httpx

from image_pipeline.domain.images.url_policy import (
    REDIRECTS,
    FetchError,
    FetchNetworkError,
    FetchPolicy,
    FetchRefused,
    FetchTimeout,
    FetchTooLarge,
    Resolver,
    Target,
    check_url,
    system_resolve,
)
from image_pipeline.domain.process_cache import ProcessCache

if TYPE_CHECKING:
    pass


@dataclass
class Fetched:
    url: str  # final URL after redirects
    status: int
    content_type: str | None
    body: bytes
    elapsed: float
    host: str = ""  # the checked host name of the last hop (the key of its per-host limit)
    retry_after: str | None = None  # the answer's Retry-After header, as sent


def _certifi_context() -> ssl.SSLContext:
    import certifi

    return ssl.create_default_context(cafile=certifi.where())  # what httpx builds for verify=True


# Loading the CA bundle is costly (docs/performance.md); every client of a process shares one context
# (image_pipeline.domain.process_cache). Built on first use, so it reads the bundle of the running process.
_TLS_CONTEXTS: ProcessCache[ssl.SSLContext] = ProcessCache(_certifi_context, maxsize=1)


def default_tls_context() -> ssl.SSLContext:
    """This process's certificate-checking TLS context (the certifi bundle, as httpx's default)."""
    return _TLS_CONTEXTS.get()


# (host, port) -> the address checked for it, for the request being sent in this task (see _send).
_PINS: contextvars.ContextVar[Mapping[tuple[str, int], str] | None] = contextvars.ContextVar(
    "imgpipe_pins", default=None
)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Opens every TCP connection to the address `check_url` pinned for the request opening it.

    httpcore opens a connection in the task that sends the request, so the pin travels in a context
    variable. A connection that no check pinned is refused: nothing reaches DNS or an unchecked address.
    """

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        name = host.strip("[]").lower()
        address = (_PINS.get() or {}).get((name, port))
        if address is None:
            raise httpcore.ConnectError(f"no checked address for {name}:{port}")
        return await self._inner.connect_tcp(
            address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore.ConnectError("unix sockets are never used")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose connections go to pinned addresses only."""

    def __init__(self, verify: ssl.SSLContext, limits: httpx.Limits) -> None:
        super().__init__(verify=verify, limits=limits, trust_env=False)
        # httpx has no public hook for the network backend; its pool is rebuilt with the same settings.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=verify,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PinnedBackend(),
        )


def make_client(
    policy: FetchPolicy, max_connections: int = 64, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncClient:
    """The shared client: keep-alive pool keyed by host name, connections to checked addresses only,
    no automatic redirects (we re-check every hop), no proxies.

    `verify`: certificate checking (default: the certifi bundle, in this process's shared context);
    an SSLContext to trust a private CA.
    """
    if verify is True:
        verify = default_tls_context()
    if verify is False:
        verify = ssl.create_default_context()
        verify.check_hostname = False
        verify.verify_mode = ssl.CERT_NONE
    timeout = httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout)
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        transport=_PinnedTransport(verify, limits),
        headers={"User-Agent": policy.user_agent},
    )


class _BoundedDecoder:
    """Undo a gzip/deflate Content-Encoding, bounding what arrives and what it decodes to by `limit`.

    httpx would inflate each network chunk in full (a 64 KiB chunk of a gzip bomb is 64 MiB); here
    `max_length` stops zlib at the limit, so memory stays bounded by the limit whatever the ratio. The
    bytes as sent are counted too, and anything after the end of the compressed stream (which zlib
    would set aside in `unused_data` uncounted, re-copying it on every chunk) is refused, as is a stream
    that never ends: the body is one complete stream and nothing else.
    """

    def __init__(self, encoding: str, limit: int) -> None:
        codings = [c.strip() for c in encoding.lower().split(",") if c.strip() and c.strip() != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise FetchError(f"unsupported Content-Encoding {encoding!r} (identity, gzip or deflate only)")
        self.coding = codings[0] if codings else None
        self.limit, self.total, self.raw_total = limit, 0, 0
        self._z = None
        if self.coding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._deflate_first = self.coding == "deflate"

    def _count(self, data: bytes) -> bytes:
        self.total += len(data)
        if self.total > self.limit:
            raise FetchTooLarge(f"response exceeds the limit of {self.limit:,} bytes")
        return data

    def feed(self, raw: bytes) -> bytes:
        self.raw_total += len(raw)
        if self.raw_total > self.limit:
            raise FetchTooLarge(f"response exceeds the limit of {self.limit:,} bytes (as sent)")
        if self.coding is None:
            return self._count(raw)
        if self._deflate_first:  # "deflate" is zlib-wrapped by the spec, raw deflate in practice: try both
            if not raw:
                return b""
            self._deflate_first = False
            probe = zlib.decompressobj()
            try:
                out = probe.decompress(raw, self.limit + 1)
            except zlib.error:
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
            else:
                self._z = probe
                return self._checked(out)
        return self._inflate(raw)

    def finish(self) -> bytes:
        if self._z is None or self.raw_total == 0:
            return b""  # identity, or an empty body (a redirect, a 204) whatever its label
        if not self._z.eof:
            raise FetchError(f"corrupt {self.coding} body: truncated (the stream never ends)")
        return b""

    def _inflate(self, raw: bytes) -> bytes:
        assert self._z is not None
        if self._z.eof:
            if raw:
                raise FetchError(f"corrupt {self.coding} body: data after the end of the stream")
            return b""
        try:
            out = self._z.decompress(raw, self.limit - self.total + 1)
        except zlib.error as exc:
            raise FetchError(f"corrupt {self.coding} body: {exc}") from exc
        return self._checked(out)

    def _checked(self, out: bytes) -> bytes:
        assert self._z is not None
        if self._z.unused_data:
            raise FetchError(f"corrupt {self.coding} body: data after the end of the stream")
        return self._count(out)


HostHold = Callable[[str], AbstractAsyncContextManager[object]]


def _no_hold(host: str) -> AbstractAsyncContextManager[object]:
    return nullcontext()


async def _send(
    client: httpx.AsyncClient,
    method: str,
    target: Target,
    policy: FetchPolicy,
    content: bytes | None,
    headers: dict[str, str] | None,
    peek: int | None = None,
) -> tuple[httpx.Response, bytes]:
    """One request to the checked `target`; its body, bounded and decoded (see _BoundedDecoder).

    `peek`: read at most this many bytes of the body as sent and stop there, undecoded (a webhook
    receiver's answer is only looked at, never used); no error for a longer body.
    """
    req = client.build_request(
        method,
        target.request_url,
        headers={"Accept-Encoding": "gzip, deflate", **(headers or {}), **target.headers},
        content=content,
        extensions=target.extensions,
    )
    pin = _PINS.set({(target.host, target.port): target.address})
    try:
        resp = await client.send(req, stream=True)
        try:
            if peek is not None:
                kept, size = [], 0
                async for raw in resp.aiter_raw():
                    kept.append(raw[: peek - size])
                    size += len(kept[-1])
                    if size >= peek:
                        break
                return resp, b"".join(kept)
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > policy.max_bytes:
                raise FetchTooLarge(f"response is {int(declared):,} bytes, over the limit of {policy.max_bytes:,}")
            decoder = _BoundedDecoder(resp.headers.get("content-encoding", ""), policy.max_bytes)
            chunks = []
            async for raw in resp.aiter_raw():  # raw bytes: counted (and decoded) here, not by httpx
                chunks.append(decoder.feed(raw))
            chunks.append(decoder.finish())
            return resp, b"".join(chunks)
        finally:
            await resp.aclose()
    finally:
        _PINS.reset(pin)


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    policy: FetchPolicy,
    *,
    method: str = "GET",
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    follow_redirects: bool = True,
    resolve: Resolver = system_resolve,
    require_https: bool = False,
    hold: HostHold = _no_hold,
    peek: int | None = None,
) -> Fetched:
    """Fetch `url` under `policy`. Raises FetchError (refused, too big, too slow, network error).

    `hold(host)`: entered around the request of every hop, with that hop's host name (the per-host
    download limit: a redirect to another host takes a slot of that host). Time spent waiting for it is
    not counted in `policy.total_timeout`; checking and fetching each hop is. `peek`: see `_send`.
    """
    start = time.monotonic()
    spent = 0.0

    async def timed(coro):
        nonlocal spent
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(policy.total_timeout - spent):
                return await coro
        finally:
            spent += time.monotonic() - t0

    try:
        current = url
        for _hop in range(policy.max_redirects + 1):
            target = await timed(check_url(current, policy, resolve, require_https=require_https))
            async with hold(target.host):
                resp, body = await timed(_send(client, method, target, policy, content, headers, peek))
            if follow_redirects and resp.status_code in REDIRECTS and "location" in resp.headers:
                try:
                    current = urljoin(current, resp.headers["location"])
                except ValueError as exc:
                    raise FetchRefused(f"malformed redirect Location: {exc}") from exc
                if resp.status_code == 303:
                    method, content = "GET", None
                continue
            return Fetched(
                current,
                resp.status_code,
                resp.headers.get("content-type"),
                body,
                time.monotonic() - start,
                host=target.host,
                retry_after=resp.headers.get("retry-after"),
            )
        raise FetchError(f"too many redirects (more than {policy.max_redirects})")
    except TimeoutError as exc:
        raise FetchTimeout(f"timed out after {policy.total_timeout:g} s") from exc
    except httpx.TimeoutException as exc:
        raise FetchTimeout(f"timed out ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise FetchNetworkError(f"network error: {type(exc).__name__}: {exc}") from exc
    except (httpx.InvalidURL, UnicodeError) as exc:  # a URL or header the client cannot encode
        raise FetchRefused(f"malformed URL: {type(exc).__name__}") from exc
