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
_6TO4 = ipaddress.ip_network("2002::/16")
REDIRECTS = (301, 302, 303, 307, 308)

# Never contacted, whatever the running Python's `ipaddress` says: the IANA special-purpose registries
# (IPv4 and IPv6) minus what they call globally reachable, plus deprecated blocks. Python 3.11 calls
# several of these global (fec0::/10, 192.0.0.0/24 outside its /29, 3fff::/20, 192.88.99.0/24, 5f00::/16
# is only "reserved"); the list makes the policy independent of the interpreter's version. The checks
# through `ipaddress` below stay as a second layer. NAT64 (64:ff9b::/96), 6to4 and Teredo are judged by
# the IPv4 address they embed, before this list.
_DENY: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(net), what)
    for net, what in (
        ("0.0.0.0/8", "this-network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (carrier-grade NAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast (deprecated)"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("::ffff:0:0:0/96", "IPv4-translated"),
        ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation"),
        ("100::/64", "discard-only"),
        ("100:0:0:1::/64", "dummy prefix"),
        ("2001::/23", "IETF protocol assignment"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "segment routing (SRv6) SID"),
        ("fc00::/7", "unique-local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    )
)
_TEREDO = ipaddress.ip_network("2001::/32")
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


class FetchError(Exception):
    """A URL we refused or could not fetch; the message is shown to the user per URL."""


class FetchRefused(FetchError):
    """The URL breaks the fetch policy (scheme, credentials, port, private address): retrying cannot help."""


class FetchTooLarge(FetchError):
    """The response is over the byte limit (as sent or decoded): retrying cannot help."""


class FetchTimeout(FetchError):
    """The download took too long (connect, read or the total deadline): worth another try."""


class FetchNetworkError(FetchError):
    """The connection failed or broke (refused, reset, closed mid-answer): worth another try."""


@dataclass(frozen=True)
class FetchPolicy:
    allow: frozenset[tuple[str, int]] = frozenset()
    ports: frozenset[int] = frozenset({80, 443})
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    total_timeout: float = 60.0
    max_bytes: int = 25 * 1024 * 1024
    max_redirects: int = 5
    webhook_response_bytes: int = 4096  # of a webhook receiver's answer, at most this much is read
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
            webhook_response_bytes=s.webhook_max_response_bytes,
        )


def address_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why this address must not be contacted (its kind, never the address itself: refusals are shown
    to callers and must not map an internal network), or None when it is globally routable."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is None and ip in _6TO4:
            embedded = ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)
        if embedded is None and ip in _TEREDO and ip.teredo:
            embedded = ip.teredo[1]
        if embedded is not None:
            inner = address_problem(embedded)
            return f"{inner} (embedded in an IPv6 address)" if inner else None
    for net, what in _DENY:
        if ip.version == net.version and ip in net:
            return f"{what} address"
    for attr, what in (
        ("is_loopback", "loopback"),
        ("is_private", "private"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_unspecified", "unspecified"),
        ("is_reserved", "reserved"),
        ("is_site_local", "site-local"),
    ):
        if getattr(ip, attr, False):
            return f"{what} address"
    if not ip.is_global:
        return "non-public address"
    return None


def _is_ipv4_spelling(host: str) -> bool:
    """What getaddrinfo reads as an IPv4 address without DNS ("127.1", "0x7f000001", "2130706433")."""
    try:
        socket.inet_aton(host)
    except (OSError, ValueError):
        return False
    return True


def normalise_host(hostname: str) -> str:
    """The host as DNS, the Host header and TLS SNI must carry it, or FetchRefused saying what is wrong.

    IPv6 literals come back compressed; IPv4 spellings as given (getaddrinfo reads them); names are
    lower-cased and Unicode labels encoded to A-labels by IDNA 2008 with the UTS 46 mapping (`idna`,
    non-transitional: "faß.de" stays itself, "bücher。example" -> "xn--bcher-kva.example"). Every label
    must be 1-63 characters of letters, digits, "-" and "_" (not starting or ending with "-"); "xn--"
    labels must be valid A-labels; the name at most 253 characters. The standard library would raise
    UnicodeError on these from deep inside getaddrinfo or the HTTP client instead.
    """
    import idna

    host = hostname.lower()
    if not host:
        raise FetchRefused("URL has no host")
    if ":" in host:  # only an IPv6 literal can contain a colon here (urlsplit took the port off)
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError as exc:
            raise FetchRefused(f"malformed host {hostname!r}: not an IPv6 address") from exc
    if _is_ipv4_spelling(host):
        return host
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True, transitional=False).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            raise FetchRefused(f"malformed host {hostname!r}: {exc}") from exc
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253:
        raise FetchRefused(f"malformed host {hostname!r}: longer than 253 characters")
    for label in name.split("."):
        problem = None
        if not label:
            problem = "empty label"
        elif len(label) > 63:
            problem = f"label of {len(label)} characters (at most 63)"
        elif not _LABEL_CHARS.issuperset(label):
            problem = "only letters, digits, '-' and '_' are allowed in a label"
        elif label.startswith("-") or label.endswith("-"):
            problem = "a label must not start or end with '-'"
        elif label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError, ValueError):
                problem = f"{label!r} is not a valid IDNA A-label"
        if problem:
            raise FetchRefused(f"malformed host {hostname!r}: {problem}")
    return host


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
    pinned_url: str  # the checked address in place of the name (what the connection goes to)
    request_url: str  # the URL with the host's A-label: what is sent (the pool is keyed by name)
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
        raw_host = parts.hostname or ""
    except ValueError as exc:
        raise FetchRefused(f"malformed URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchRefused(f"scheme {parts.scheme!r} is not allowed (http/https only)")
    if parts.username is not None or parts.password is not None:
        raise FetchRefused("credentials in URLs (user:pass@) are not allowed")
    host = normalise_host(raw_host)
    port = port or (443 if scheme == "https" else 80)
    allowed_pair = (host, port) in policy.allow
    literal = ":" in host or _is_ipv4_spelling(host)
    if not literal and "." not in host.rstrip(".") and not allowed_pair:
        # A single-label name ("postgres", "redis", "localhost") is never a public web host: refused
        # without asking DNS, so refusals cannot tell which internal service names exist.
        raise FetchRefused(f"refused: {host!r} is not a public host name (single label)")
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
    name = f"[{host}]" if ":" in host else host
    request_url = urlunsplit((scheme, f"{name}:{port}", parts.path or "/", parts.query, ""))
    host_header = name if parts.port is None else f"{name}:{parts.port}"
    ext = {"sni_hostname": host} if scheme == "https" else {}
    return Target(
        url=url,
        pinned_url=pinned,
        request_url=request_url,
        host=host,
        port=port,
        address=address,
        headers={"Host": host_header},
        extensions=ext,
    )
