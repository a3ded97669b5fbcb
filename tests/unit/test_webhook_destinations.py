"""Which addresses a webhook may reach (issue 29, item 3): every form of a private address is
refused, whether the URL names it or a name resolves to it, and the request is pinned to the
address that was checked, with the original name kept for `Host` and TLS."""

from __future__ import annotations

import ipaddress

import pytest

from sentiment_platform.services.alerting.destinations import (
    UnsafeWebhookUrl,
    check_destination,
    refusal,
)

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "0.0.0.0",
    "100.64.0.1",  # shared address space (carrier-grade NAT)
    "192.0.0.1",
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    "192.88.99.1",  # 6to4 relay anycast
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",  # link-local
    "fc00::1",  # unique local
    "fd12:3456::1",
    "fec0::1",  # site-local
    "ff02::1",  # multicast
    "ff0e::1",
    "2001:db8::1",  # documentation
    "3fff::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b:1::808:808",  # local-use NAT64: the network's own mapping
    "::127.0.0.1",  # IPv4-compatible
    "::10.0.0.1",
    "::8.8.8.8",  # IPv4-compatible is deprecated: refused whatever it embeds
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "2001:0:7f00:1:8000:63bf:80ff:fffe",  # Teredo whose client is 127.0.0.1
]
ALLOWED = [
    "8.8.8.8",
    "93.184.215.14",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",  # IPv4-mapped public: reaches 8.8.8.8
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8 (an IPv6-only network's DNS64 answer)
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize("address", REFUSED)
def test_every_private_form_is_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def answering(*addresses: str):  # noqa: ANN201 - a Resolver
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return list(addresses)

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize("address", REFUSED)
async def test_a_name_resolving_to_a_private_form_is_refused(address: str) -> None:
    with pytest.raises(UnsafeWebhookUrl, match="non-public.*WEBHOOK_ALLOW_PRIVATE"):
        await check_destination("https://hooks.example/x", False, answering(address))


@pytest.mark.parametrize("address", [a for a in REFUSED if ":" in a])
async def test_a_url_naming_a_private_ipv6_form_is_refused(address: str) -> None:
    resolver = answering("8.8.8.8")
    with pytest.raises(UnsafeWebhookUrl, match="non-public"):
        await check_destination(f"http://[{address}]:8080/x", False, resolver)
    assert resolver.calls == []  # a literal address is not looked up


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://2130706433/x",  # 127.0.0.1 as one number
        "http://0x7f.1/x",
        "http://0177.0.0.1/x",
        "http://127.1/x",
        "http://0/x",
        "http://localhost/x",
        "http://[::ffff:7f00:1]/x",
    ],
)
async def test_numeric_spellings_of_loopback_are_refused(url: str) -> None:
    with pytest.raises(UnsafeWebhookUrl, match="non-public|does not resolve|not a usable URL"):
        await check_destination(url, allow_private=False)


async def test_one_private_answer_among_public_ones_refuses_the_name() -> None:
    with pytest.raises(UnsafeWebhookUrl, match="127.0.0.1"):
        await check_destination("https://h.example/", False, answering("8.8.8.8", "127.0.0.1"))


async def test_the_request_is_pinned_to_the_checked_address_with_the_name_kept() -> None:
    resolver = answering("93.184.215.14", "2606:4700:4700::1111", "93.184.215.14")
    destination = await check_destination(
        "https://Hooks.Example:8443/services/T0/B0/secret?token=abc", False, resolver
    )
    assert resolver.calls == ["hooks.example"]
    assert destination.addresses == ("93.184.215.14", "2606:4700:4700::1111")
    url, headers, extensions = destination.pinned("2606:4700:4700::1111")
    assert str(url) == "https://[2606:4700:4700::1111]:8443/services/T0/B0/secret?token=abc"
    assert headers == {"Host": "hooks.example:8443", "Connection": "close"}
    assert extensions == {"sni_hostname": "hooks.example"}

    plain = await check_destination("http://hooks.example/x", False, answering("8.8.8.8"))
    url, headers, extensions = plain.pinned("8.8.8.8")
    assert str(url) == "http://8.8.8.8/x" and headers["Host"] == "hooks.example"
    assert extensions == {}  # no TLS, no SNI

    literal = await check_destination("https://8.8.8.8/x", False, resolver)
    assert literal.pinned("8.8.8.8")[2] == {}  # an IP literal is no SNI name


async def test_an_internationalised_name_is_resolved_and_presented_encoded() -> None:
    resolver = answering("8.8.8.8")
    destination = await check_destination("https://bücher.example/x", False, resolver)
    assert resolver.calls == ["xn--bcher-kva.example"]
    _, headers, extensions = destination.pinned("8.8.8.8")
    assert headers["Host"] == "xn--bcher-kva.example"
    assert extensions == {"sni_hostname": "xn--bcher-kva.example"}


async def test_allowed_private_addresses_are_pinned_too() -> None:
    destination = await check_destination("http://hooks.test/x", True, answering("127.0.0.1"))
    assert destination.addresses == ("127.0.0.1",)


async def test_a_name_that_does_not_resolve_or_resolves_to_nothing() -> None:
    async def failing(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(UnsafeWebhookUrl, match="does not resolve"):
        await check_destination("http://h.example/", True, failing)
    with pytest.raises(UnsafeWebhookUrl, match="does not resolve"):
        await check_destination("http://h.example/", True, answering())
