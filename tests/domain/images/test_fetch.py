import asyncio
import ipaddress

import pytest

from image_pipeline.domain.images.fetch import fetch, make_client
from image_pipeline.domain.images.url_policy import FetchError, FetchPolicy, address_problem, check_url
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

    with pytest.raises(FetchError, match="private"):
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
