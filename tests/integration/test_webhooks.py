"""Webhook notifications against a real HTTP receiver on 127.0.0.1, on SQLite and PostgreSQL:
signed, retried while the receiver is down, in order per rule, given up after the retry
period, refused for private addresses unless allowed, sent to the address that was checked
(a name that answers differently the second time never reaches loopback), with the name kept
for `Host` and TLS, and never logged."""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.config import Settings
from sentiment_platform.domain import AlertItem
from sentiment_platform.models.alerting import WebhookDelivery
from sentiment_platform.rule_spec import RuleSpec, rule_alert_type
from sentiment_platform.services.alerting.destinations import UnsafeWebhookUrl, check_destination
from sentiment_platform.services.alerting.webhooks import (
    SIGNATURE_HEADER,
    deliver_due,
    enqueue,
    verify,
)
from sentiment_platform.telemetry import configure_logging
from tests.support.receiver import Receiver, self_signed, unused_port

pytestmark = pytest.mark.asyncio

T0 = datetime.fromisoformat("2026-03-01T12:00:00+00:00")
SECRET = "s3cret-for-the-test"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


@pytest.fixture
def setup(
    database: tuple[Settings, async_sessionmaker[AsyncSession]],
) -> tuple[Settings, async_sessionmaker[AsyncSession]]:
    settings, sessions = database
    fast = settings.model_copy(
        update={
            "webhook_allow_private": True,
            "webhook_backoff_base_s": 1.0,
            "webhook_backoff_cap_s": 4.0,
            "webhook_retry_for_s": 600.0,
            "webhook_timeout_s": 2.0,
        }
    )
    return fast, sessions


async def make_rule(session: AsyncSession, url: str, secret: str | None = SECRET) -> int:
    spec = RuleSpec.model_validate(
        {"name": "delays", "keywords": ["delay"], "threshold": 0.5, "webhook_url": url}
        | ({"webhook_secret": secret} if secret else {})
    )
    return (await store.create_rule(session, spec, T0)).id


async def make_alert(session: AsyncSession, rule_id: int, state: str = "firing") -> AlertItem:
    alert = await store.insert_firing_alert(
        session,
        alert_type=rule_alert_type(rule_id),
        severity="warning",
        message="negative share 62% over 5 min (74 posts)",
        details={"share": 0.62},
        created_at=T0,
    )
    assert alert is not None
    await store.update_alert(session, alert.id, rule_id=rule_id, rule_name="delays", state=state)
    return AlertItem.model_validate(alert)


async def pending(session: AsyncSession) -> list[WebhookDelivery]:
    return [d for d in await store.due_deliveries(session, T0 + timedelta(days=1), 100)]


async def test_a_signed_post_whose_signature_verifies(setup, receiver, client) -> None:
    settings, sessions = setup
    async with sessions() as session:
        rule_id = await make_rule(session, receiver.url())
        item = await make_alert(session, rule_id)
        await enqueue(session, item, "fire", receiver.url(), T0)
        await session.commit()
        assert await deliver_due(session, client, T0, settings) == 1
        await session.commit()

    (got,) = receiver.received
    assert verify(got.body, SECRET, got.headers[SIGNATURE_HEADER])
    assert got.headers["Content-Type"] == "application/json"
    payload = got.json
    assert payload["id"] == item.id and payload["rule_id"] == rule_id
    assert payload["rule_name"] == "delays" and payload["event"] == "fire"
    assert payload["text"] == "[WARNING] delays: negative share 62% over 5 min (74 posts)"
    assert SECRET not in got.body.decode()

    async with sessions() as session:
        (delivery,) = await store.alert_deliveries(session, item.id)
        assert delivery.done and delivery.status == 200 and delivery.attempt == 1
        assert await deliver_due(session, client, T0 + timedelta(hours=1), settings) == 0
    assert len(receiver.received) == 1  # delivered once, not again


async def test_no_secret_no_signature_and_no_webhook_no_delivery(setup, receiver, client) -> None:
    settings, sessions = setup
    async with sessions() as session:
        rule_id = await make_rule(session, receiver.url(), secret=None)
        item = await make_alert(session, rule_id)
        assert await enqueue(session, item, "fire", None, T0) is None
        await enqueue(session, item, "fire", receiver.url(), T0)
        await deliver_due(session, client, T0, settings)
        await session.commit()
    (got,) = receiver.received
    assert SIGNATURE_HEADER not in got.headers


async def test_a_receiver_down_at_first_gets_it_later(setup, client) -> None:
    settings, sessions = setup
    later = Receiver(unused_port())  # not listening yet
    async with sessions() as session:
        rule_id = await make_rule(session, later.url())
        item = await make_alert(session, rule_id)
        await enqueue(session, item, "fire", later.url(), T0)
        await session.commit()

        assert await deliver_due(session, client, T0, settings) == 0
        await session.commit()
        (delivery,) = await store.alert_deliveries(session, item.id)
        assert not delivery.done and delivery.attempt == 1 and delivery.status is None
        assert "Connect" in (delivery.error or "")
        assert T0 + timedelta(seconds=0.5) <= delivery.next_attempt_at <= T0 + timedelta(seconds=1)
        assert await deliver_due(session, client, T0, settings) == 0  # not due yet
        assert delivery.attempt == 1

        later.start()
        try:
            assert await deliver_due(session, client, T0 + timedelta(minutes=1), settings) == 1
            await session.commit()
        finally:
            later.stop()
        assert delivery.done and delivery.status == 200 and delivery.attempt == 2
        assert [a["attempt"] for a in delivery.attempts] == [1, 2]
        assert delivery.attempts[0]["error"] and delivery.attempts[1]["status"] == 200
    (got,) = later.received
    assert verify(got.body, SECRET, got.headers[SIGNATURE_HEADER])


async def test_in_order_per_rule_while_other_rules_go_on(setup, receiver, client) -> None:
    settings, sessions = setup
    async with sessions() as session:
        slow = await make_rule(session, receiver.url("/slow"))
        fast = await make_rule(session, receiver.url("/fast"))
        slow_alert = await make_alert(session, slow)
        fast_alert = await make_alert(session, fast)
        for event in ("fire", "renotify", "resolve"):
            await enqueue(session, slow_alert, event, receiver.url("/slow"), T0)
        await enqueue(session, fast_alert, "fire", receiver.url("/fast"), T0)
        await session.commit()
        receiver.failures["/slow"].extend([500, 503])

        assert await deliver_due(session, client, T0, settings) == 1  # /fast; /slow waits
        assert [r.json["event"] for r in receiver.delivered("/slow")] == []
        delivered = 0
        for second in range(1, 60):
            delivered += await deliver_due(
                session, client, T0 + timedelta(seconds=second), settings
            )
            if delivered == 3:
                break
        await session.commit()
        assert await pending(session) == []

    events = [(r.status, r.json["event"]) for r in receiver.received if r.path == "/slow"]
    assert events == [
        (500, "fire"),
        (503, "fire"),
        (200, "fire"),
        (200, "renotify"),
        (200, "resolve"),
    ]


async def test_given_up_after_the_retry_period_then_the_next_goes(setup, receiver, client) -> None:
    settings, sessions = setup
    settings = settings.model_copy(update={"webhook_retry_for_s": 10.0})
    async with sessions() as session:
        rule_id = await make_rule(session, receiver.url())
        item = await make_alert(session, rule_id)
        await enqueue(session, item, "fire", receiver.url(), T0)
        await enqueue(session, item, "resolve", receiver.url(), T0)
        receiver.failures["/hook"].extend([500] * 100)
        for second in range(0, 30):
            await deliver_due(session, client, T0 + timedelta(seconds=second), settings)
        first, second_ = await store.alert_deliveries(session, item.id)
        assert first.done and (first.error or "").startswith("gave up after")
        assert first.status == 500 and second_.done is True  # also gave up, in its turn
        receiver.failures["/hook"].clear()
        await enqueue(session, item, "fire", receiver.url(), T0 + timedelta(seconds=40))
        assert await deliver_due(session, client, T0 + timedelta(seconds=40), settings) == 1
        await session.commit()


async def test_deleting_a_rule_cancels_its_pending_deliveries(setup, receiver, client) -> None:
    settings, sessions = setup
    async with sessions() as session:
        rule_id = await make_rule(session, receiver.url())
        item = await make_alert(session, rule_id)
        await enqueue(session, item, "fire", receiver.url(), T0)
        assert await store.delete_rule(session, rule_id, T0)
        assert await deliver_due(session, client, T0, settings) == 0
        (delivery,) = await store.alert_deliveries(session, item.id)
        assert delivery.done and "deleted" in (delivery.error or "")
        await session.commit()
    assert receiver.received == []


async def test_private_destinations_are_refused_unless_allowed(setup, receiver, client) -> None:
    for url in (
        "http://127.0.0.1:9/x",
        "http://10.1.2.3/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest",
        "http://localhost/x",
    ):
        with pytest.raises(UnsafeWebhookUrl, match="non-public"):
            await check_destination(url, allow_private=False)
    await check_destination("http://127.0.0.1:9/x", allow_private=True)
    with pytest.raises(UnsafeWebhookUrl, match="does not resolve"):
        await check_destination("http://no-such-host.invalid/x", allow_private=True)

    settings, sessions = setup
    strict = settings.model_copy(update={"webhook_allow_private": False})
    async with sessions() as session:
        rule_id = await make_rule(session, receiver.url())
        item = await make_alert(session, rule_id)
        await enqueue(session, item, "fire", receiver.url(), T0)
        assert await deliver_due(session, client, T0, strict) == 0
        (delivery,) = await store.alert_deliveries(session, item.id)
        assert (delivery.error or "").startswith("refused:") and not delivery.done
        await session.commit()
    assert receiver.received == []


async def test_the_builtin_rule_uses_the_alert_webhook_settings(setup, receiver, client) -> None:
    settings, sessions = setup
    settings = settings.model_copy(
        update={
            "alert_webhook_url": receiver.url("/global"),
            "alert_webhook_secret": SecretStr(SECRET),
        }
    )
    async with sessions() as session:
        item = await make_alert(session, 0)
        assert item.rule_id == 0
        await enqueue(session, item, "fire", settings.alert_webhook_url, T0)
        assert await deliver_due(session, client, T0, settings) == 1
        await session.commit()
    (got,) = receiver.received
    assert got.path == "/global" and verify(got.body, SECRET, got.headers[SIGNATURE_HEADER])


PUBLIC = "192.0.0.9"  # globally reachable by IANA's registry, and nobody's receiver here


class Rebinding:
    """A DNS that answers `name` with a public address the first time and 127.0.0.1 after:
    both as `socket.getaddrinfo` (what the system resolver, and httpx, ask) and as an
    injected `Resolver`. Other names go to the real resolver."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.answers: list[str] = []
        self._real = socket.getaddrinfo

    def next_answer(self) -> str:
        self.answers.append(PUBLIC if not self.answers else "127.0.0.1")
        return self.answers[-1]

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        asked = host.decode() if isinstance(host, bytes) else host
        if asked != self.name:
            return self._real(host, port, *args, **kwargs)
        address = (self.next_answer(), int(port))
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)]

    async def resolve(self, host: str, port: int) -> list[str]:
        assert host == self.name
        return [self.next_answer()]


@pytest.mark.parametrize("how", ["system", "injected"])
async def test_a_name_rebinding_to_loopback_never_reaches_it(
    setup, receiver, client, monkeypatch, how: str
) -> None:
    """The check sees the public address; a second lookup would get 127.0.0.1, where the
    receiver listens. The request must go to the checked address, so it never arrives."""
    settings, sessions = setup
    strict = settings.model_copy(update={"webhook_allow_private": False, "webhook_timeout_s": 0.5})
    dns = Rebinding("rebind.test")
    monkeypatch.setattr(socket, "getaddrinfo", dns.getaddrinfo)
    url = receiver.url(host="rebind.test")
    async with sessions() as session:
        rule_id = await make_rule(session, url)
        item = await make_alert(session, rule_id)
        await enqueue(session, item, "fire", url, T0)
        extra = {"resolve": dns.resolve} if how == "injected" else {}
        assert await deliver_due(session, client, T0, strict, **extra) == 0
        (delivery,) = await store.alert_deliveries(session, item.id)
        await session.commit()
    assert receiver.received == []
    assert dns.answers == [PUBLIC]  # looked up once: the request went to what was checked
    assert not (delivery.error or "").startswith("refused")  # checked, passed, then unreachable


async def test_pinned_to_the_resolved_address_with_the_host_header_kept(
    setup, receiver, client
) -> None:
    """`hooks.test` is in no DNS: the request arrives only because it went to the address the
    injected resolver gave, and the receiver still sees the name in `Host`."""
    settings, sessions = setup
    looked_up: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return ["127.0.0.1"]

    url = receiver.url("/hook?token=abc", host="hooks.test")
    async with sessions() as session:
        rule_id = await make_rule(session, url)
        item = await make_alert(session, rule_id)
        await enqueue(session, item, "fire", url, T0)
        assert await deliver_due(session, client, T0, settings, resolve=resolve) == 1
        await session.commit()
    (got,) = receiver.received
    assert got.path == "/hook?token=abc" and looked_up == ["hooks.test"]
    assert got.headers["Host"] == f"hooks.test:{receiver.port}"
    assert verify(got.body, SECRET, got.headers[SIGNATURE_HEADER])


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[Receiver, ssl.SSLContext]]:
    """An https receiver whose certificate names `hooks.test` only, and a client context
    that trusts that certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = self_signed(tmp_path, "hooks.test")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    running = Receiver(unused_port(), tls=server).start()
    yield running, ssl.create_default_context(cafile=str(cert))
    running.stop()


async def test_https_presents_and_verifies_the_original_name(setup, tls_receiver) -> None:
    """Sent to 127.0.0.1, yet TLS asks for `hooks.test` (SNI) and checks the certificate
    against it: the certificate has no IP address, so a check against the IP would fail."""
    settings, sessions = setup
    receiver, trusting = tls_receiver

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    good, wrong = receiver.url(host="hooks.test"), receiver.url("/other", host="other.test")
    async with httpx.AsyncClient(verify=trusting) as client, sessions() as session:
        rule_id = await make_rule(session, good)
        item = await make_alert(session, rule_id)
        await enqueue(session, item, "fire", good, T0)
        assert await deliver_due(session, client, T0, settings, resolve=resolve) == 1
        other = await make_rule(session, wrong)
        other_item = await make_alert(session, other)
        await enqueue(session, other_item, "fire", wrong, T0)
        assert await deliver_due(session, client, T0, settings, resolve=resolve) == 0
        (refused,) = await store.alert_deliveries(session, other_item.id)
        await session.commit()
    (got,) = receiver.received
    assert got.headers["Host"] == f"hooks.test:{receiver.port}"
    assert verify(got.body, SECRET, got.headers[SIGNATURE_HEADER])
    assert receiver.server_names[0] == "hooks.test"
    assert "other.test" in receiver.server_names  # asked for, and not what the cert names
    assert "CERTIFICATE_VERIFY_FAILED" in (refused.error or ""), refused.error


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, was in quiet.items():
        logging.getLogger(name).setLevel(was)


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
async def test_a_delivery_logs_no_url(
    setup, receiver, client, caplog, restore_logging, level: str
) -> None:
    """At the default level and at DEBUG, nothing logged while delivering carries the URL
    (its path and query are the secret of many webhooks)."""
    settings, sessions = setup
    settings = settings.model_copy(update={"log_level": level})
    configure_logging(settings)
    logging.getLogger().addHandler(caplog.handler)  # configure_logging replaced the handlers
    caplog.handler.setLevel(logging.DEBUG)
    url = receiver.url("/services/T0/B0/very-secret-path?token=abc")
    async with sessions() as session:
        rule_id = await make_rule(session, url)
        item = await make_alert(session, rule_id)
        await enqueue(session, item, "fire", url, T0)
        assert await deliver_due(session, client, T0, settings) == 1
        await session.commit()
    logged = [f"{r.name} {r.getMessage()} {vars(r)}" for r in caplog.records]
    assert any("webhook delivered" in line for line in logged)  # the capture works
    leaks = [line for line in logged if "very-secret-path" in line or "token=abc" in line]
    assert leaks == []
