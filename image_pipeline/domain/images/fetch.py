"""SSRF-safe HTTP fetching for image downloads and webhook deliveries.

Every hop: only http/https, only allowed ports, no userinfo; the host is resolved once and refused
if ANY address is not globally routable; the connection then goes to the address that was checked
(Host header and TLS SNI keep the original name), so DNS rebinding cannot swap it. Redirects are
followed by hand, re-checking each hop. Bodies are counted while streaming (Content-Length is not
trusted) and cut at a byte limit and a total deadline. Compressed bodies (gzip/deflate) are decoded
here, never more than the byte limit at a time, so a gzip bomb costs at most that much memory.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import httpx

from image_pipeline.domain.images.url_policy import (
    REDIRECTS,
    FetchError,
    FetchPolicy,
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


def _certifi_context() -> ssl.SSLContext:
    import certifi

    return ssl.create_default_context(cafile=certifi.where())  # what httpx builds for verify=True


# Loading the CA bundle is costly (docs/performance.md); every client of a process shares one context
# (image_pipeline.domain.process_cache). Built on first use, so it reads the bundle of the running process.
_TLS_CONTEXTS: ProcessCache[ssl.SSLContext] = ProcessCache(_certifi_context, maxsize=1)


def default_tls_context() -> ssl.SSLContext:
    """This process's certificate-checking TLS context (the certifi bundle, as httpx's default)."""
    return _TLS_CONTEXTS.get()


def make_client(
    policy: FetchPolicy, max_connections: int = 64, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncClient:
    """The shared client: keep-alive pool, no automatic redirects (we re-check every hop), no proxies.

    `verify`: certificate checking (default: the certifi bundle, in this process's shared context);
    an SSLContext to trust a private CA.
    """
    if verify is True:
        verify = default_tls_context()
    timeout = httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout)
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.AsyncClient(
        timeout=timeout,
        limits=limits,
        follow_redirects=False,
        trust_env=False,
        verify=verify,
        headers={"User-Agent": policy.user_agent},
    )


class _BoundedDecoder:
    """Undo a gzip/deflate Content-Encoding while never producing more than `limit` bytes in total.

    httpx would inflate each network chunk in full (a 64 KiB chunk of a gzip bomb is 64 MiB); here
    `max_length` stops zlib at the limit, so memory stays bounded by the limit whatever the ratio.
    """

    def __init__(self, encoding: str, limit: int) -> None:
        codings = [c.strip() for c in encoding.lower().split(",") if c.strip() and c.strip() != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise FetchError(f"unsupported Content-Encoding {encoding!r} (identity, gzip or deflate only)")
        self.coding = codings[0] if codings else None
        self.limit, self.total = limit, 0
        self._z = None
        if self.coding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._deflate_first = self.coding == "deflate"

    def _count(self, data: bytes) -> bytes:
        self.total += len(data)
        if self.total > self.limit:
            raise FetchError(f"response exceeds the limit of {self.limit:,} bytes")
        return data

    def feed(self, raw: bytes) -> bytes:
        if self.coding is None:
            return self._count(raw)
        if self._deflate_first:  # "deflate" is zlib-wrapped by the spec, raw deflate in practice: try both
            self._deflate_first = False
            probe = zlib.decompressobj()
            try:
                out = probe.decompress(raw, self.limit + 1)
            except zlib.error:
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
            else:
                self._z = probe
                return self._count(out)
        return self._inflate(raw)

    def finish(self) -> bytes:
        return self._count(self._z.flush()) if self._z is not None else b""

    def _inflate(self, raw: bytes) -> bytes:
        assert self._z is not None
        try:
            out = self._z.decompress(raw, self.limit - self.total + 1)
        except zlib.error as exc:
            raise FetchError(f"corrupt {self.coding} body: {exc}") from exc
        return self._count(out)


async def _send(
    client: httpx.AsyncClient,
    method: str,
    target: Target,
    policy: FetchPolicy,
    content: bytes | None,
    headers: dict[str, str] | None,
) -> tuple[httpx.Response, bytes]:
    req = client.build_request(
        method,
        target.pinned_url,
        headers={"Accept-Encoding": "gzip, deflate", **(headers or {}), **target.headers},
        content=content,
        extensions=target.extensions,
    )
    resp = await client.send(req, stream=True)
    try:
        declared = resp.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > policy.max_bytes:
            raise FetchError(f"response is {int(declared):,} bytes, over the limit of {policy.max_bytes:,}")
        decoder = _BoundedDecoder(resp.headers.get("content-encoding", ""), policy.max_bytes)
        chunks = []
        async for raw in resp.aiter_raw():  # raw bytes: counted (and decoded) here, not by httpx
            chunks.append(decoder.feed(raw))
        chunks.append(decoder.finish())
        return resp, b"".join(chunks)
    finally:
        await resp.aclose()


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
) -> Fetched:
    """Fetch `url` under `policy`. Raises FetchError (refused, too big, too slow, network error)."""
    start = time.monotonic()
    try:
        async with asyncio.timeout(policy.total_timeout):
            current = url
            for _hop in range(policy.max_redirects + 1):
                target = await check_url(current, policy, resolve, require_https=require_https)
                resp, body = await _send(client, method, target, policy, content, headers)
                if follow_redirects and resp.status_code in REDIRECTS and "location" in resp.headers:
                    current = urljoin(current, resp.headers["location"])
                    if resp.status_code == 303:
                        method, content = "GET", None
                    continue
                return Fetched(
                    current, resp.status_code, resp.headers.get("content-type"), body, time.monotonic() - start
                )
            raise FetchError(f"too many redirects (more than {policy.max_redirects})")
    except TimeoutError as exc:
        raise FetchError(f"timed out after {policy.total_timeout:g} s") from exc
    except httpx.TimeoutException as exc:
        raise FetchError(f"timed out ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise FetchError(f"network error: {type(exc).__name__}: {exc}") from exc
