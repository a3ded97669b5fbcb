"""Where a webhook may go: a URL's host resolved once, every address checked, and the request
sent to a checked address (pinned) so that DNS cannot answer differently in between.

Resolving to check and letting the HTTP client resolve again to connect is a DNS-rebinding
hole: a name can answer a public address to the check and 127.0.0.1 to the connect. So the
check returns the addresses it approved (`Destination`) and the request goes to one of them,
with the original name kept where the receiver looks for it: the `Host` header, and for
https the TLS SNI and the certificate's hostname check (httpcore's `sni_hostname`
extension). The connection is closed after the request (`Connection: close`), so a pooled
connection opened for one name never carries a request for another.

An address is refused unless it is publicly routable, IPv6 forms that embed an IPv4 address
included: IPv4-mapped (`::ffff:a.b.c.d`) and NAT64 (`64:ff9b::/96`) are judged by the IPv4
address they reach; 6to4 (`2002::/16`) and Teredo by theirs as well as by their own;
IPv4-compatible (`::a.b.c.d`, deprecated) and local-use NAT64 (`64:ff9b:1::/48`, whose mapping
is the network's own) are always refused. The standard library's `is_global` is the base;
multicast, site-local and the few ranges it still calls global are refused on top of it.
One non-public address among a name's answers refuses the name: which one a connection would
get is not ours to choose.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052's well-known prefix
LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: the network's own mapping
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291, deprecated
# Not publicly routable, though `is_global` of Python 3.11 says otherwise.
NOT_GLOBAL = (
    ipaddress.IPv4Network("192.88.99.0/24"),  # 6to4 relay anycast (RFC 7526, deprecated)
    ipaddress.IPv6Network("3fff::/20"),  # documentation (RFC 9637)
    ipaddress.IPv6Network("5f00::/16"),  # SRv6 SIDs (RFC 9602)
    ipaddress.IPv6Network("fec0::/10"),  # site-local (RFC 3879, deprecated)
)


class UnsafeWebhookUrl(ValueError):
    """The URL's host does not resolve, or resolves to an address we refuse to call."""


async def resolve_host(host: str, port: int) -> list[str]:
    """The system resolver's addresses for `host`, in its order (the default `Resolver`)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _own_verdict(ip: IPAddress) -> str | None:
    for name in ("loopback", "link_local", "multicast", "unspecified", "private", "reserved"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local"
    if any(ip in network for network in NOT_GLOBAL) or not ip.is_global:
        return "not publicly routable"
    return None


def refusal(ip: IPAddress) -> str | None:
    """Why `ip` is not a public destination, or None when it is."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _own_verdict(ip)
    if ip in LOCAL_NAT64:
        return "local-use NAT64"
    if ip in IPV4_COMPATIBLE:  # `::` and `::1` are in it too: say what they are
        compatible = ipaddress.IPv4Address(int(ip))
        return _own_verdict(ip) if int(ip) <= 1 else f"embeds {compatible}, IPv4-compatible form"
    embedded = ip.ipv4_mapped
    if embedded is None and ip in NAT64:
        embedded = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    if embedded is not None:  # it reaches the IPv4 address: that is what counts
        reason = _own_verdict(embedded)
        return None if reason is None else f"embeds {embedded}, {reason}"
    tunnelled = [ip.sixtofour] if ip.sixtofour else list(ip.teredo or ())
    for address in tunnelled:
        if address is not None and (reason := _own_verdict(address)):
            return f"embeds {address}, {reason}"
    return _own_verdict(ip)


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked URL and the addresses it may be sent to, in the resolver's order."""

    url: httpx.URL
    addresses: tuple[str, ...]

    @property
    def sni_hostname(self) -> str | None:
        """The name TLS presents and checks the certificate against (None: an IP literal)."""
        host = self.url.raw_host.decode("ascii")
        return None if _literal(host) else host

    def pinned(self, address: str) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
        """The URL to request (`address` in place of the host), the headers that keep the
        original name (`Host`) and close the connection after it, and the extensions that
        keep it for TLS."""
        url = self.url.copy_with(host=address)
        headers = {"Host": self.url.netloc.decode("ascii"), "Connection": "close"}
        sni = self.sni_hostname
        extensions = {"sni_hostname": sni} if sni and self.url.scheme == "https" else {}
        return url, headers, extensions


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def check_destination(
    url: str, allow_private: bool, resolve: Resolver = resolve_host
) -> Destination:
    """Resolve the URL's host once and approve its addresses: a `Destination` to send to.

    Raises `UnsafeWebhookUrl` when the URL cannot be parsed, its host does not resolve, or
    (unless `allow_private`) any of its addresses is not public."""
    try:
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError) as error:
        raise UnsafeWebhookUrl(f"not a usable URL ({error})") from None
    if parsed.scheme not in ("http", "https") or not host:
        raise UnsafeWebhookUrl("not an absolute http:// or https:// URL with a host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if (literal := _literal(host)) is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = await resolve(host, port)
        except (OSError, UnicodeError) as error:
            raise UnsafeWebhookUrl(f"host {host!r} does not resolve ({error})") from None
        if not addresses:
            raise UnsafeWebhookUrl(f"host {host!r} does not resolve (no address)")
    checked: list[str] = []
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise UnsafeWebhookUrl(f"host {host!r} resolves to {text!r}, not an address") from None
        reason = None if allow_private else refusal(ip)
        if reason is not None:
            raise UnsafeWebhookUrl(
                f"host {host!r} resolves to a non-public address ({ip}: {reason}); "
                "set WEBHOOK_ALLOW_PRIVATE=true to allow it"
            )
        if str(ip) not in checked:
            checked.append(str(ip))
    return Destination(parsed, tuple(checked))
