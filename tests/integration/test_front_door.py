"""Who reaches the API: only under the host names it serves (no DNS rebinding), and rate
limited per IPv4 address or per IPv6 /64."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from sentiment_platform.api.deps import client_network
from sentiment_platform.api.hosts import allowed_hosts
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, upgrade_schema
from sentiment_platform.main import create_app
from tests.support.servers import ThreadedServer, serve_process

POST = {"source": "test", "content": "hello"}


def sqlite(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'f.db'}",
        embedded_worker=False,
        **overrides,
    )


def test_default_hosts_are_loopback_and_api_host() -> None:
    assert allowed_hosts(Settings(_env_file=None)) == [  # type: ignore[call-arg]
        "localhost",
        "127.0.0.1",
        "::1",
        "[::1]",
    ]
    named = Settings(_env_file=None, api_host="10.0.0.5")  # type: ignore[call-arg]
    assert allowed_hosts(named)[-1] == "10.0.0.5"
    explicit = Settings(_env_file=None, allowed_hosts="api.example.com, *.example.org")  # type: ignore[call-arg]
    assert allowed_hosts(explicit) == ["api.example.com", "*.example.org"]
    assert allowed_hosts(Settings(_env_file=None, api_host="0.0.0.0")) == ["*"]  # type: ignore[call-arg]


async def test_a_rebinding_host_cannot_post_or_open_the_feed(tmp_path: Path) -> None:
    settings = sqlite(tmp_path)
    engine = create_engine(settings)
    await upgrade_schema(engine)
    await engine.dispose()
    with ThreadedServer(settings) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            evil = {"Host": "rebind.attacker.example:8000"}
            refused = await http.post("/api/posts", json=POST, headers=evil)
            assert refused.status_code == 400
            upgrade = {
                **evil,
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            }
            feed = await http.get("/ws", headers=upgrade)
            assert feed.status_code in (400, 403), feed.status_code
            ours = await http.post("/api/posts", json=POST)  # Host: 127.0.0.1:<port>
            assert ours.status_code == 202
            assert (await http.get("/api/health", headers={"Host": "localhost"})).status_code == 200


def test_ipv6_callers_are_one_caller_per_64() -> None:
    assert client_network("2001:db8:1:2::10") == client_network("2001:db8:1:2:ffff::1")
    assert client_network("2001:db8:1:2::10") == "2001:db8:1:2::/64"
    assert client_network("2001:db8:1:3::10") != client_network("2001:db8:1:2::10")
    assert client_network("::ffff:203.0.113.7") == "203.0.113.7"
    assert client_network("203.0.113.7") == "203.0.113.7"


async def test_rotating_ipv6_addresses_buys_no_budget(tmp_path: Path) -> None:
    settings = sqlite(tmp_path, rate_limit_per_minute=3)
    engine = create_engine(settings)
    await upgrade_schema(engine)
    await engine.dispose()
    app = create_app(settings)

    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 4321))
        return httpx.AsyncClient(transport=transport, base_url="http://localhost")

    async with app.router.lifespan_context(app):
        codes = []
        for host in range(1, 6):  # five addresses of one /64
            async with client(f"2001:db8:1:2::{host:x}") as http:
                codes.append((await http.get("/api/alerts")).status_code)
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        async with client("2001:db8:1:3::1") as other:  # another subscriber
            assert (await other.get("/api/alerts")).status_code == 200


def _calls_from_loopback(base: str, forwarded_for: list[str]) -> list[int]:
    """One read per X-Forwarded-For value, all from 127.0.0.1, inside one rate-limit window."""
    if 60 - time.time() % 60 < 10:
        time.sleep(60 - time.time() % 60 + 0.1)  # the fixed window would roll over mid-test
    with httpx.Client(base_url=base, timeout=10) as http:
        return [
            http.get("/api/alerts", headers={"X-Forwarded-For": address}).status_code
            for address in forwarded_for
        ]


@pytest.mark.parametrize("trusted", [None, "127.0.0.1"])
def test_x_forwarded_for_names_the_caller_only_from_forwarded_allow_ips(
    tmp_path: Path, trusted: str | None
) -> None:
    """`serve` with its defaults believes no proxy header: a local process (or a proxy that
    passes the header through) cannot buy a fresh budget by naming a new address each time.
    With FORWARDED_ALLOW_IPS naming the proxy, each forwarded address is a caller."""
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'f.db'}",
        "RATE_LIMIT_PER_MINUTE": "3",
        "EMBEDDED_WORKER": "false",
    }
    if trusted is not None:
        env["FORWARDED_ALLOW_IPS"] = trusted
    with serve_process(env, tmp_path) as base:
        addresses = [f"203.0.113.{i}" for i in range(1, 6)]
        codes = _calls_from_loopback(base, addresses)
        if trusted is None:  # one caller, 127.0.0.1: one budget of three
            assert codes == [200, 200, 200, 429, 429]
        else:  # five callers, one call each; then one of them over its own three
            assert codes == [200] * 5
            assert _calls_from_loopback(base, ["203.0.113.9"] * 4) == [200, 200, 200, 429]
