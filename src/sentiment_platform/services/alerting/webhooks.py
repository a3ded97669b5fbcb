"""Webhook notifications of alert rules: stored, signed, retried, in order.

Every fire, re-notification and resolve of a rule with a `webhook_url` is queued as a
`webhook_deliveries` row (`enqueue`) in the monitor's transaction, and sent by the monitor's
leader each tick (`deliver_due`): a POST of the alert item plus a one-line `text` (what a
Slack or Mattermost incoming webhook shows), with `X-Signature-256: sha256=<hex HMAC-SHA256
of the raw body>` when the rule has a secret (GitHub's convention). Any answer but a 2xx is
retried with exponential backoff and jitter (`WEBHOOK_BACKOFF_BASE_S` doubling up to
`WEBHOOK_BACKOFF_CAP_S`, `Retry-After` honoured up to the cap) until `WEBHOOK_RETRY_FOR_S`
after it was queued. At least once: a row is marked done only after a 2xx (a crash in
between sends it again). In order per rule: only the oldest pending row of a rule is tried.

The URL and secret are the rule's at sending time (the built-in rule's: `ALERT_WEBHOOK_URL`,
`ALERT_WEBHOOK_SECRET`). A URL whose host resolves to a loopback, private, link-local or
otherwise non-public address is refused unless `WEBHOOK_ALLOW_PRIVATE=true`, and the request
goes to the address that was checked (`destinations.py`: no second lookup for DNS to answer
differently); redirects are not followed. Neither URL nor secret is ever logged (the httpx
loggers, which would write the URL, are held at WARNING by `telemetry`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform import store
from sentiment_platform.config import Settings
from sentiment_platform.domain import AlertItem
from sentiment_platform.models.alerting import WebhookDelivery
from sentiment_platform.retry import Backoff
from sentiment_platform.rule_spec import BUILTIN_RULE_ID
from sentiment_platform.services.alerting.destinations import (
    Destination,
    Resolver,
    UnsafeWebhookUrl,
    check_destination,
    resolve_host,
)

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Signature-256"
MAX_LOGGED_ATTEMPTS = 100  # per delivery; the counters go on
MAX_HEADS = 50  # rules served per round
MAX_ROUNDS = 10  # rounds per call: a rule's backlog drains ten deep per tick
MAX_ADDRESSES = 3  # a name's checked addresses tried in turn while connecting fails


def sign(body: bytes, secret: str) -> str:
    """The `X-Signature-256` value: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, signature: str) -> bool:
    """What a receiver does: compare in constant time."""
    return hmac.compare_digest(sign(body, secret), signature)


def human_text(item: AlertItem, action: str) -> str:
    """One line a chat tool shows as it is."""
    label = "RESOLVED" if action == "resolve" else item.severity.upper()
    return f"[{label}] {item.rule_name}: {item.message}"


def payload_for(item: AlertItem, action: str) -> dict[str, Any]:
    """The JSON body: the alert item, `event` (fire, renotify, resolve) and `text`."""
    return item.model_dump(mode="json") | {"event": action, "text": human_text(item, action)}


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


async def enqueue(
    session: AsyncSession, item: AlertItem, action: str, webhook_url: str | None, now: datetime
) -> WebhookDelivery | None:
    """Queue one notification of `item`'s rule (in the caller's transaction); nothing when
    the rule has no webhook."""
    if not webhook_url:
        return None
    return await store.enqueue_delivery(
        session,
        alert_id=item.id,
        rule_id=item.rule_id,
        payload=payload_for(item, action),
        now=now,
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int | None = None
    error: str | None = None
    retry_after_s: float | None = None
    unreached: bool = False  # the connection failed: nothing was sent

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


async def _destination(
    session: AsyncSession, rule_id: int, settings: Settings
) -> tuple[str | None, str | None]:
    """The rule's webhook URL and secret now (None URL: deleted, or no webhook any more)."""
    if rule_id == BUILTIN_RULE_ID:
        secret = settings.alert_webhook_secret
        return settings.alert_webhook_url, secret.get_secret_value() if secret else None
    rule = await store.get_rule(session, rule_id)
    if rule is None:
        return None, None
    return rule.webhook_url, rule.webhook_secret


async def _send(
    client: httpx.AsyncClient,
    url: str,
    secret: str | None,
    body: bytes,
    settings: Settings,
    resolve: Resolver,
) -> Outcome:
    try:
        destination = await check_destination(url, settings.webhook_allow_private, resolve)
    except UnsafeWebhookUrl as error:
        return Outcome(error=f"refused: {error}")
    headers = {"Content-Type": "application/json", "User-Agent": "sentiment-platform-webhook"}
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    outcome = Outcome(error="no address")
    for address in destination.addresses[:MAX_ADDRESSES]:
        outcome = await _post(client, destination, address, headers, body, settings)
        if not outcome.unreached:
            break  # answered, or failed once connected: another address could send it twice
    return outcome


async def _post(
    client: httpx.AsyncClient,
    destination: Destination,
    address: str,
    headers: dict[str, str],
    body: bytes,
    settings: Settings,
) -> Outcome:
    """One POST to one checked address of the destination (pinned: no second lookup)."""
    try:
        url, keep_name, extensions = destination.pinned(address)
    except httpx.InvalidURL as error:  # a scoped IPv6 address, say (private: allowed only)
        return Outcome(error=f"refused: cannot address {address} ({error})")
    try:
        response = await client.post(
            url,
            content=body,
            headers=headers | keep_name,
            timeout=settings.webhook_timeout_s,
            follow_redirects=False,
            extensions=extensions,
        )
    except httpx.HTTPError as error:
        return Outcome(
            error=_scrubbed(f"{type(error).__name__}: {error}", destination.url, url),
            unreached=isinstance(error, httpx.ConnectError),
        )
    retry_after = response.headers.get("Retry-After", "")
    return Outcome(
        status=response.status_code,
        error=None if response.is_success else f"HTTP {response.status_code}",
        retry_after_s=float(retry_after) if retry_after.isdigit() else None,
    )


def _scrubbed(text: str, *urls: httpx.URL) -> str:
    """An error's text without the URL, its path or its query: they may carry a token
    (Slack's do), and the deliveries are readable by anyone."""
    for url in urls:
        for part in (str(url), url.raw_path.decode("ascii", "replace")):
            if len(part) > 1:
                text = text.replace(part, "<url>")
    return text[:300]


def _record(
    delivery: WebhookDelivery,
    outcome: Outcome,
    now: datetime,
    settings: Settings,
    rng: Callable[[], float],
) -> str:
    """Write one attempt onto its row; returns what became of the delivery."""
    delivery.attempt += 1
    delivery.status, delivery.error = outcome.status, outcome.error
    entry = {"at": now.isoformat(), "attempt": delivery.attempt}
    entry |= {"status": outcome.status, "error": outcome.error}
    delivery.attempts = [*delivery.attempts, entry][-MAX_LOGGED_ATTEMPTS:]
    if outcome.delivered:
        delivery.done = True
        return "delivered"
    backoff = Backoff(settings.webhook_backoff_base_s, settings.webhook_backoff_cap_s, rng=rng)
    delay = max(
        backoff.delay(delivery.attempt),
        min(outcome.retry_after_s or 0.0, settings.webhook_backoff_cap_s),
    )
    delivery.next_attempt_at = now + timedelta(seconds=delay)
    if delivery.next_attempt_at - delivery.created_at > timedelta(
        seconds=settings.webhook_retry_for_s
    ):
        delivery.done = True
        delivery.error = f"gave up after {delivery.attempt} attempts: {outcome.error}"
        return "gave_up"
    return "retry"


async def deliver_due(
    session: AsyncSession,
    client: httpx.AsyncClient,
    now: datetime,
    settings: Settings,
    *,
    rng: Callable[[], float] = random.random,
    resolve: Resolver = resolve_host,
) -> int:
    """Send what is due: the oldest pending delivery of each rule, the rules concurrently,
    again while some succeed (up to `MAX_ROUNDS`). Returns how many were delivered.

    The monitor's leader calls it each tick and commits after it returns (the rows are
    flushed); HTTP runs outside any write, each request bounded by `WEBHOOK_TIMEOUT_S`.
    """
    delivered = 0
    for _ in range(MAX_ROUNDS):
        heads = await store.due_deliveries(session, now, MAX_HEADS)
        if not heads:
            break
        targets = [await _destination(session, head.rule_id, settings) for head in heads]
        outcomes = await asyncio.gather(
            *(
                _send(client, url, secret, body_of(head.payload), settings, resolve)
                if url
                else _no_webhook()
                for head, (url, secret) in zip(heads, targets, strict=True)
            )
        )
        succeeded = 0
        for head, (url, _), outcome in zip(heads, targets, outcomes, strict=True):
            if not url:
                head.done, head.error, head.next_attempt_at = True, outcome.error, now
                continue
            result = _record(head, outcome, now, settings, rng)
            succeeded += result == "delivered"
            log.log(
                logging.INFO if result == "delivered" else logging.WARNING,
                "webhook %s",
                result,
                extra={
                    "event": f"webhook.{result}",
                    "delivery_id": head.id,
                    "alert_id": head.alert_id,
                    "rule_id": head.rule_id,
                    "attempt": head.attempt,
                    "status": outcome.status,
                    "error": outcome.error,
                },
            )
        await session.flush()
        delivered += succeeded
        if not succeeded:
            break
    return delivered


async def _no_webhook() -> Outcome:
    return Outcome(error="cancelled: the rule is gone or has no webhook_url")
