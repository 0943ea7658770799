import asyncio
import ipaddress

import pytest

from image_pipeline.domain.images.fetch import fetch, make_client
from image_pipeline.domain.images.url_policy import FetchError, FetchPolicy, FetchRefused, address_problem, check_url
from image_pipeline.domain.settings import parse_allow


@pytest.mark.parametrize(
    "addr",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "64:ff9b::7f00:1",
        "2002:7f00:1::",
        "ff02::1",
    ],
)
def test_non_global_addresses_are_refused(addr: str) -> None:
    assert address_problem(ipaddress.ip_address(addr)) is not None


@pytest.mark.parametrize("addr", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "64:ff9b::5db8:d822"])
def test_public_addresses_pass(addr: str) -> None:
    assert address_problem(ipaddress.ip_address(addr)) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0x7f000001/",
        "http://[::ffff:127.0.0.1]/",
        "http://127.1/",
        "http://localhost/",
        "http://0/",
        "http://017700000001/",
    ],
)
def test_odd_spellings_of_loopback_are_caught(url: str) -> None:
    with pytest.raises(FetchError, match="refused"):
        asyncio.run(check_url(url, FetchPolicy()))


@pytest.mark.parametrize(
    "url,reason",
    [
        ("ftp://example.com/x", "scheme"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://93.184.216.34:8080/", "port"),
    ],
)
def test_scheme_userinfo_and_port_rules(url: str, reason: str) -> None:
    async def public(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    with pytest.raises(FetchError, match=reason):
        asyncio.run(check_url(url, FetchPolicy(), resolve=public))


def test_any_private_address_among_many_is_refused() -> None:
    async def mixed(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.5"]

    with pytest.raises(FetchError, match="does not resolve to a public address"):
        asyncio.run(check_url("https://example.com/", FetchPolicy(), resolve=mixed))


def test_pinned_target_keeps_host_and_sni() -> None:
    async def public(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    t = asyncio.run(check_url("https://Example.com/a.jpg?x=1", FetchPolicy(), resolve=public))
    assert t.pinned_url == "https://93.184.216.34:443/a.jpg?x=1"
    assert t.headers["Host"] == "example.com" and t.extensions == {"sni_hostname": "example.com"}


def test_allow_list_exempts_exact_pairs_only(image_server) -> None:
    image_server.add("/a.jpg", b"abc")
    policy = FetchPolicy(allow=parse_allow(image_server.allow))
    port = image_server.server.port

    async def run(url: str) -> bytes:
        async with make_client(policy) as client:
            return (await fetch(client, url, policy)).body

    assert asyncio.run(run(f"http://127.0.0.1:{port}/a.jpg")) == b"abc"
    with pytest.raises(FetchError, match="refused"):
        asyncio.run(run(f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}/a.jpg"))


@pytest.mark.parametrize("host", ["127.0.0.1", "93.184.216.34", "127.1", "0x7f000001", "::1", "localhost"])
def test_address_literals_resolve_as_getaddrinfo_does(host: str) -> None:
    """Dotted quads skip the resolver thread; the answer is the one getaddrinfo gives."""
    import socket

    from image_pipeline.domain.images.url_policy import system_resolve

    expected = list(dict.fromkeys(i[4][0] for i in socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)))
    assert asyncio.run(system_resolve(host, 80)) == expected


# --- issue 15: ranges Python 3.11 calls global, malformed and international host names ---------------


@pytest.mark.parametrize(
    "addr",
    [
        "fec0::1",  # site-local (deprecated): global to Python 3.11
        "192.0.0.9",  # IETF protocol assignments outside the /29 Python 3.11 knows
        "192.0.0.200",
        "3fff::1",  # documentation (RFC 9637)
        "192.88.99.1",  # 6to4 relay anycast (deprecated)
        "5f00::1",  # SRv6 SIDs
        "100:0:0:1::1",  # dummy prefix
        "64:ff9b:1::a9fe:a9fe",  # local-use translation prefix
        "2002:c000:0009::",  # 6to4 of 192.0.0.9
        "::ffff:192.0.0.9",
    ],
)
def test_ranges_python_calls_global_are_refused(addr: str) -> None:
    """Issue 15 item 8: fails before for fec0::/10, 192.0.0.0/24, 3fff::/20, 192.88.99.0/24 and their 6to4
    and mapped forms (Python 3.11's ipaddress calls them global); the other rows are siblings that were
    already refused by chance ("reserved") and must stay so. Passes with the explicit deny list."""
    assert address_problem(ipaddress.ip_address(addr)) is not None


def test_refusals_never_name_the_internal_address() -> None:
    """Issue 15 item 8: fails before ("resolves to a private address 10.20.30.40"): a refusal must not map
    an internal network."""

    async def internal(host: str, port: int) -> list[str]:
        return ["10.20.30.40"]

    with pytest.raises(FetchError, match="refused") as err:
        asyncio.run(check_url("https://db.corp.example/", FetchPolicy(), resolve=internal))
    assert "10.20.30.40" not in str(err.value) and "not resolve to a public address" in str(err.value)


def test_single_label_names_are_refused_without_dns() -> None:
    """Issue 15 item 8: fails before (the name was resolved, so a refusal told that an internal service
    "postgres" exists, and which address it has)."""
    asked: list[str] = []

    async def record(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["172.18.0.3"]

    for url in ("http://postgres/x.jpg", "http://redis./x.jpg", "https://minio:443/x"):
        with pytest.raises(FetchError, match="not a public host name") as err:
            asyncio.run(check_url(url, FetchPolicy(), resolve=record))
        assert "172.18" not in str(err.value)
    assert asked == []
    # An allowed pair is still reachable by its single-label name.
    t = asyncio.run(check_url("http://images:8080/a.jpg", FetchPolicy(allow=frozenset({("images", 8080)})), record))
    assert t.address == "172.18.0.3"


@pytest.mark.parametrize(
    "url,why",
    [
        ("https://a..b.example.com/h", "empty label"),
        ("https://" + "x" * 64 + ".example.com/a.jpg", "64 characters"),
        ("https://.example.com/a.jpg", "empty label"),
        ("https://a b.example/a.jpg", "only letters"),
        ("https://%41.example/a.jpg", "only letters"),
        ("https://-a.example/a.jpg", "start or end"),
        ("https://xn--zz.example/a.jpg", "A-label"),
        ("https://a\u200db.example/a.jpg", "malformed host"),  # a joiner where IDNA 2008 forbids it
        ("https://" + "a." * 127 + "com/a.jpg", "253"),
        ("https://[::1/a.jpg", "malformed URL"),
        ("https://example.com:99999/a.jpg", "malformed URL"),
    ],
)
def test_malformed_hosts_are_clean_refusals(url: str, why: str) -> None:
    """Issue 15 item 2: fails before (UnicodeError from the resolver's idna codec, which the worker
    reported as "internal error"); passes: a FetchRefused that says what is wrong, before any DNS."""
    asked: list[str] = []

    async def record(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["93.184.216.34"]

    with pytest.raises(FetchRefused, match=why):
        asyncio.run(check_url(url, FetchPolicy(), resolve=record))
    assert asked == []


@pytest.mark.parametrize(
    "host,alabel",
    [
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("bücher\u3002example", "xn--bcher-kva.example"),  # ideographic full stop (UTS 46 maps it)
        ("faß.de", "xn--fa-hia.de"),  # IDNA 2008, non-transitional: not "fass.de" as IDNA 2003 had it
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("cdn_1.example.com", "cdn_1.example.com"),  # underscores exist in real host names
    ],
)
def test_international_names_go_to_dns_host_and_sni_as_a_labels(host: str, alabel: str) -> None:
    """Issue 15 item 2: fails before (the raw Unicode name went to getaddrinfo's IDNA 2003 codec and into
    the Host header: "internal error: UnicodeEncodeError" for every image of an IDN shop). The ASCII rows
    guard against refusing too much (A-labels, underscores)."""
    asked: list[str] = []

    async def record(h: str, port: int) -> list[str]:
        asked.append(h)
        return ["93.184.216.34"]

    t = asyncio.run(check_url(f"https://{host}/a.jpg", FetchPolicy(), resolve=record))
    assert asked == [alabel] and t.host == alabel
    assert t.headers["Host"] == alabel and t.extensions == {"sni_hostname": alabel}
    assert t.request_url == f"https://{alabel}:443/a.jpg"
