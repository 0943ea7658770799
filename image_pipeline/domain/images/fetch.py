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
import ipaddress
import socket
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from image_pipeline.domain.process_cache import ProcessCache

if TYPE_CHECKING:
    from image_pipeline.domain.settings import Settings

Resolver = Callable[[str, int], Awaitable[list[str]]]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_6TO4 = ipaddress.ip_network("2002::/16")
REDIRECTS = (301, 302, 303, 307, 308)


class FetchError(Exception):
    """A URL we refused or could not fetch; the message is shown to the user per URL."""


class FetchRefused(FetchError):
    """The URL breaks the fetch policy (scheme, credentials, port, private address): retrying cannot help."""


@dataclass(frozen=True)
class FetchPolicy:
    allow: frozenset[tuple[str, int]] = frozenset()
    ports: frozenset[int] = frozenset({80, 443})
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    total_timeout: float = 60.0
    max_bytes: int = 25 * 1024 * 1024
    max_redirects: int = 5
    user_agent: str = "image-pipeline/0.1 (+https://github.com/image-pipeline)"

    @classmethod
    def from_settings(cls, s: Settings) -> FetchPolicy:
        return cls(
            allow=s.fetch_allow_set,
            connect_timeout=s.fetch_connect_timeout,
            read_timeout=s.fetch_read_timeout,
            total_timeout=s.fetch_total_timeout,
            max_bytes=s.fetch_max_bytes,
            max_redirects=s.fetch_max_redirects,
        )


def address_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why this address must not be contacted, or None when it is globally routable."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped
        if embedded is None and (ip in _NAT64 or ip in _NAT64_LOCAL):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is None and ip in _6TO4:
            embedded = ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)
        if embedded is None and ip.teredo:
            embedded = ip.teredo[1]
        if embedded is not None:
            inner = address_problem(embedded)
            return f"{inner} (embedded in {ip})" if inner else None
    for attr, what in (
        ("is_loopback", "loopback"),
        ("is_private", "private"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_unspecified", "unspecified"),
        ("is_reserved", "reserved"),
    ):
        if getattr(ip, attr):
            return f"{what} address {ip}"
    if not ip.is_global:
        return f"non-public address {ip}"
    return None


async def system_resolve(host: str, port: int) -> list[str]:
    try:
        # A dotted-quad literal resolves to itself: skip the resolver thread. (Other spellings such as
        # "127.1" or "0x7f000001", and IPv6 literals, still go through getaddrinfo as before.)
        return [str(ipaddress.IPv4Address(host))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve host {host!r}: {exc.strerror or exc}") from exc
    return list(dict.fromkeys(info[4][0] for info in infos))


@dataclass
class Target:
    """A checked hop: the URL to request (host replaced by the pinned address) plus headers/extensions."""

    url: str
    pinned_url: str
    host: str
    port: int
    address: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict = field(default_factory=dict)


async def check_url(
    url: str, policy: FetchPolicy, resolve: Resolver = system_resolve, *, require_https: bool = False
) -> Target:
    """Validate one hop and pin its address. Raises FetchError with the reason.

    `require_https` (webhooks): plain http is refused unless the host:port pair is in the allow list.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchRefused(f"malformed URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchRefused(f"scheme {parts.scheme!r} is not allowed (http/https only)")
    if parts.username is not None or parts.password is not None:
        raise FetchRefused("credentials in URLs (user:pass@) are not allowed")
    host = (parts.hostname or "").lower()
    if not host:
        raise FetchRefused("URL has no host")
    port = port or (443 if scheme == "https" else 80)
    allowed_pair = (host, port) in policy.allow
    addresses = await resolve(host, port)
    if not addresses:
        raise FetchError(f"host {host!r} has no addresses")
    for addr in addresses:
        ip = ipaddress.ip_address(addr.split("%")[0])
        if allowed_pair or (str(ip), port) in policy.allow:
            continue
        problem = address_problem(ip)
        if problem:
            raise FetchRefused(f"refused: {host} resolves to a {problem}")
    if port not in policy.ports and not (allowed_pair or any((a, port) in policy.allow for a in addresses)):
        raise FetchRefused(f"port {port} is not allowed (only {', '.join(map(str, sorted(policy.ports)))})")
    if require_https and scheme != "https" and not (allowed_pair or any((a, port) in policy.allow for a in addresses)):
        raise FetchRefused("webhook URLs must use https")
    address = addresses[0]
    netloc_ip = f"[{address}]" if ":" in address else address
    pinned = urlunsplit((scheme, f"{netloc_ip}:{port}", parts.path or "/", parts.query, ""))
    host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if ":" in (parts.hostname or "") and parts.port is None:
        host_header = f"[{parts.hostname}]"
    ext = {"sni_hostname": host} if scheme == "https" else {}
    return Target(
        url=url, pinned_url=pinned, host=host, port=port, address=address, headers={"Host": host_header}, extensions=ext
    )


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
