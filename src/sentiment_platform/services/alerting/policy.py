"""The negative-spike alert: a pure state machine, and the monitor that drives it.

`evaluate(state, sample, now, policy)` is a pure function, so every rule is tested with a
fake clock. States: `ok` → `pending` (share above the threshold, hold time not yet over) →
`firing` → `resolved` (→ `pending`/`firing` on the next spike). A window with fewer than
`ALERT_MIN_POSTS` posts gives no verdict: the state stays as it is. A firing alert resolves
only below the recovery threshold (hysteresis), so a share hovering at the threshold does
not flap.

One incident is one `Alert` row: inserted with state `firing` when it fires, updated in place
when it is re-notified (at most every `ALERT_REPEAT_MINUTES`: current share, peak, severity,
notification count), and closed with state `resolved` and `resolved_at`. Every fire,
re-notification and resolve is published as an `alert` event whose data is the row as
`GET /api/alerts` shows it. Severity is the incident's peak: `critical` once the share reached
threshold + `ALERT_CRITICAL_MARGIN`, else `warning`; an escalation to `critical` is
announced at once, not at the next re-notification.

One monitor evaluates per deployment. In Redis mode the API processes compete for a lease
(`SET key token NX PX ttl`), renewed at every check and released only by its owner (compare-
and-delete); when the leader dies another takes over once the lease expires, and picks the
firing incident up from the store, so a failover never opens a second row. In embedded mode
there is one process and no lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import redis.asyncio as redis
from pydantic_core import to_jsonable_python
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.bus import ALERT, Event, Events, redis_client
from sentiment_platform.config import Settings
from sentiment_platform.domain import Sentiment, utcnow
from sentiment_platform.models.database import Alert, SentimentAnalysis, SocialMediaPost
from sentiment_platform.telemetry import ALERTS_FIRING

log = logging.getLogger(__name__)

ALERT_TYPE = "negative_spike"
DEFAULT_RECOVERY_GAP = 0.05
LEASE_MIN_TTL_S = 5.0


class State(StrEnum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class Action(StrEnum):
    FIRE = "fire"
    RENOTIFY = "renotify"
    RESOLVE = "resolve"


@dataclass(frozen=True, slots=True)
class Policy:
    threshold: float
    recovery_threshold: float
    min_posts: int
    hold: timedelta
    repeat: timedelta
    critical_margin: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.recovery_threshold < self.threshold:
            raise ValueError(
                f"ALERT_RECOVERY_THRESHOLD ({self.recovery_threshold}) must be below "
                f"ALERT_THRESHOLD ({self.threshold})"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        recovery = settings.alert_recovery_threshold
        if recovery is None:
            # A threshold under the default gap keeps a proportional band instead.
            gap = min(DEFAULT_RECOVERY_GAP, settings.alert_threshold / 2)
            recovery = round(settings.alert_threshold - gap, 6)
        return cls(
            threshold=settings.alert_threshold,
            recovery_threshold=recovery,
            min_posts=settings.alert_min_posts,
            hold=timedelta(seconds=settings.alert_hold_seconds),
            repeat=timedelta(minutes=settings.alert_repeat_minutes),
            critical_margin=settings.alert_critical_margin,
        )

    def severity(self, share: float) -> Severity:
        if share >= round(self.threshold + self.critical_margin, 9):  # 0.4 + 0.2 is 0.6
            return Severity.CRITICAL
        return Severity.WARNING


@dataclass(frozen=True, slots=True)
class Sample:
    """Analysed posts in the window, and how many of them are negative."""

    total: int
    negative: int

    @property
    def share(self) -> float:
        return self.negative / self.total if self.total else 0.0


@dataclass(frozen=True, slots=True)
class AlertState:
    state: State = State.OK
    since: datetime | None = None  # pending: first seen above; firing: fired; resolved: when
    notified_at: datetime | None = None  # firing: last fire or re-notification
    severity: Severity | None = None  # firing: the incident's peak severity
    peak_share: float = 0.0
    notifications: int = 0
    alert_id: int | None = None  # firing: the incident's row, once stored


@dataclass(frozen=True, slots=True)
class Decision:
    state: AlertState
    action: Action | None = None


def _worse(a: Severity | None, b: Severity) -> Severity:
    return Severity.CRITICAL if Severity.CRITICAL in (a, b) else Severity.WARNING


def evaluate(state: AlertState, sample: Sample, now: datetime, policy: Policy) -> Decision:
    """The next state after one evaluation, and what to announce (if anything)."""
    if sample.total < policy.min_posts:
        return Decision(state)
    share = sample.share
    if state.state is State.FIRING:
        if share < policy.recovery_threshold:
            return Decision(AlertState(State.RESOLVED, since=now), Action.RESOLVE)
        firing = replace(
            state,
            severity=_worse(state.severity, policy.severity(share)),
            peak_share=max(state.peak_share, share),
        )
        escalated = firing.severity is not state.severity  # warning -> critical: say so now
        if escalated or state.notified_at is None or now - state.notified_at >= policy.repeat:
            notified = replace(firing, notified_at=now, notifications=state.notifications + 1)
            return Decision(notified, Action.RENOTIFY)
        return Decision(firing)
    if share <= policy.threshold:
        if state.state is State.PENDING:
            return Decision(AlertState(State.OK))
        return Decision(state)
    since = state.since if state.state is State.PENDING and state.since is not None else now
    if now - since >= policy.hold:
        fired = AlertState(
            State.FIRING,
            since=now,
            notified_at=now,
            severity=policy.severity(share),
            peak_share=share,
            notifications=1,
        )
        return Decision(fired, Action.FIRE)
    return Decision(AlertState(State.PENDING, since=since))


def alert_item(alert: Alert) -> dict[str, Any]:
    """The alert as GET /api/alerts shows it, JSON-ready for the events channel."""
    return to_jsonable_python(
        {
            "id": alert.id,
            "alert_type": alert.alert_type,
            "message": alert.message,
            "severity": alert.severity,
            "state": alert.state,
            "details": alert.details,
            "created_at": alert.created_at,
            "resolved_at": alert.resolved_at,
        }
    )


async def count_window(session: AsyncSession, start: datetime, end: datetime) -> Sample:
    """Analysed posts created in [start, end) by sentiment: one grouped count, no buckets."""
    rows = await session.execute(
        select(SentimentAnalysis.sentiment, func.count())
        .select_from(SocialMediaPost)
        .join(SocialMediaPost.analysis)
        .where(SocialMediaPost.created_at >= start, SocialMediaPost.created_at < end)
        .group_by(SentimentAnalysis.sentiment)
    )
    counts: dict[str, int] = {label: count for label, count in rows}
    return Sample(total=sum(counts.values()), negative=counts.get(Sentiment.NEGATIVE.value, 0))


class RedisLease:
    """A lock with expiry: taken with SET NX PX, renewed and released only by its owner."""

    _RENEW = """
    if redis.call('get', KEYS[1]) == ARGV[1] then
        return redis.call('pexpire', KEYS[1], ARGV[2])
    end
    return 0
    """
    _RELEASE = """
    if redis.call('get', KEYS[1]) == ARGV[1] then
        return redis.call('del', KEYS[1])
    end
    return 0
    """

    def __init__(self, client: redis.Redis, key: str, ttl_s: float) -> None:
        self._redis = client
        self.key = key
        self._ttl_ms = int(ttl_s * 1000)
        self._token = uuid.uuid4().hex
        self._renew = client.register_script(self._RENEW)
        self._release = client.register_script(self._RELEASE)
        self.held = False

    async def hold(self) -> bool:
        """Renew the lease if we own it, else try to take it; True while we are the owner."""
        if self.held:
            renewed = await self._renew(keys=[self.key], args=[self._token, self._ttl_ms])
            self.held = bool(renewed)
        if not self.held:
            self.held = bool(await self._redis.set(self.key, self._token, nx=True, px=self._ttl_ms))
        return self.held

    async def release(self) -> None:
        if self.held:
            await self._release(keys=[self.key], args=[self._token])
            self.held = False

    async def close(self) -> None:
        await self._redis.aclose()


class AlertMonitor:
    """Evaluates the window every `ALERT_CHECK_INTERVAL_S`, stores and publishes transitions."""

    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        events: Events,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._policy = Policy.from_settings(settings)
        self._window_minutes = settings.alert_window_minutes
        self._interval_s = settings.alert_check_interval_s
        self._session_factory = session_factory
        self._events = events
        self._clock = clock
        self._lease: RedisLease | None = None
        if settings.uses_redis:
            ttl_s = max(LEASE_MIN_TTL_S, 3 * self._interval_s)
            key = f"{settings.events_channel}:alert-monitor"
            self._lease = RedisLease(redis_client(settings), key, ttl_s)
        self._state: AlertState | None = None  # None until loaded from the store as leader
        self._task: asyncio.Task[None] | None = None

    @property
    def state(self) -> AlertState | None:
        return self._state

    @property
    def is_leader(self) -> bool:
        return self._lease is None or self._lease.held

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="alert-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._lease is not None:
            with contextlib.suppress(Exception):
                await self._lease.release()
            await self._lease.close()

    async def run(self) -> None:
        """Check forever; a failed check is logged and retried at the next tick."""
        while True:
            try:
                if await self._lead():
                    await self.check()
            except Exception as error:  # noqa: BLE001 - the monitor must outlive a bad tick
                log.warning("alert check failed error=%s detail=%s", type(error).__name__, error)
            await asyncio.sleep(self._interval_s)

    async def _lead(self) -> bool:
        if self._lease is None:
            return True
        was_leader = self._lease.held
        try:
            leader = await self._lease.hold()
        except (RedisError, OSError) as error:
            log.warning("alert lease unavailable error=%s", type(error).__name__)
            self._lease.held = leader = False
        if not leader:
            self._state = None  # a later term reloads the incident from the store
        if leader != was_leader:
            log.info("alert monitor leadership leader=%s key=%s", leader, self._lease.key)
        return leader

    async def check(self) -> Decision:
        """One evaluation: read the window, step the state machine, store and publish."""
        now = self._clock()
        async with self._session_factory() as session:
            state = self._state if self._state is not None else await _restore(session)
            sample = await count_window(session, now - timedelta(minutes=self._window_minutes), now)
            decision = evaluate(state, sample, now, self._policy)
            alert = await self._record(session, state, decision, sample, now)
            await session.commit()
        self._state = decision.state
        ALERTS_FIRING.set(1 if decision.state.state is State.FIRING else 0)
        if alert is not None:
            if decision.action is Action.FIRE:
                self._state = replace(decision.state, alert_id=alert.id)
            log.info(
                "alert action=%s id=%s severity=%s share=%.3f total=%d",
                decision.action,
                alert.id,
                alert.severity,
                sample.share,
                sample.total,
            )
            await self._events.publish(Event(ALERT, alert_item(alert)))
        return decision

    async def _record(
        self,
        session: AsyncSession,
        before: AlertState,
        decision: Decision,
        sample: Sample,
        now: datetime,
    ) -> Alert | None:
        """Insert or update the incident's row for an action; None when there is nothing to say."""
        after, action = decision.state, decision.action
        if action is None:
            return None
        policy = self._policy
        facts = {
            "share": round(sample.share, 4),
            "negative": sample.negative,
            "total": sample.total,
            "threshold": policy.threshold,
            "recovery_threshold": policy.recovery_threshold,
            "window_minutes": self._window_minutes,
        }
        if action is Action.FIRE:
            fired = Alert(
                alert_type=ALERT_TYPE,
                severity=str(after.severity),
                state=State.FIRING.value,
                message=self._firing_message(sample),
                details=facts | _incident_facts(after),
                created_at=now,
            )
            session.add(fired)
            await session.flush()
            return fired
        alert = await session.get(Alert, before.alert_id) if before.alert_id is not None else None
        if alert is None:
            log.warning("alert row missing id=%s action=%s", before.alert_id, action)
            return None
        if action is Action.RENOTIFY:
            alert.severity = str(after.severity)
            alert.message = self._firing_message(sample)
            alert.details = facts | _incident_facts(after)
        else:
            alert.state = State.RESOLVED.value
            alert.resolved_at = now
            alert.message = (
                f"Resolved: negative share back to {sample.share:.0%} "
                f"(below {policy.recovery_threshold:.0%}; peak {before.peak_share:.0%})"
            )
            alert.details = (alert.details or {}) | {"resolved_share": facts["share"]}
        await session.flush()
        return alert

    def _firing_message(self, sample: Sample) -> str:
        return (
            f"Negative share {sample.share:.0%} over the last {self._window_minutes} min "
            f"exceeds {self._policy.threshold:.0%} ({sample.negative} of {sample.total} posts)"
        )


def _incident_facts(state: AlertState) -> dict[str, Any]:
    return {
        "peak_share": round(state.peak_share, 4),
        "notifications": state.notifications,
        "notified_at": state.notified_at.isoformat() if state.notified_at else None,
    }


async def _restore(session: AsyncSession) -> AlertState:
    """A new leader resumes the open incident, if any, instead of opening a second one."""
    alert = await session.scalar(
        select(Alert)
        .where(Alert.alert_type == ALERT_TYPE, Alert.state == State.FIRING.value)
        .order_by(Alert.created_at.desc(), Alert.id.desc())
        .limit(1)
    )
    if alert is None:
        return AlertState()
    details = alert.details or {}
    notified = details.get("notified_at")
    return AlertState(
        State.FIRING,
        since=alert.created_at,
        notified_at=datetime.fromisoformat(notified) if notified else alert.created_at,
        severity=Severity(alert.severity),
        peak_share=float(details.get("peak_share", 0.0)),
        notifications=int(details.get("notifications", 1)),
        alert_id=alert.id,
    )
