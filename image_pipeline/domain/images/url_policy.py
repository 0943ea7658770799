"""The fetch policy and the SSRF check of a URL: what may be fetched (scheme, port, credentials) and
where it may connect (every address the host resolves to must be globally routable, unless the exact
host:port is allowed). `fetch` runs this on every hop, the API on a webhook URL before accepting it."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

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
            # The address stays out of the message: it would map internal names (a DNS oracle).
            raise FetchRefused(
                f"refused: {host} is not a public address"
                if host == str(ip)
                else f"refused: {host} does not resolve to a public address"
            )
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
