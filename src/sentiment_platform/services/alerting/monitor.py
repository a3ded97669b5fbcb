"""The alert monitor: every `ALERT_CHECK_INTERVAL_S`, count the window, step the policy,
store and publish what changed.

The window is the posts ANALYSED in the last `ALERT_WINDOW_MINUTES` (`analyzed_at` in
[now − window, now)), not the posts created in it: when the workers run behind, a backlog
older than the window is counted as it is analysed, so a backlog of negative posts fires
within one check instead of falling outside the window and leaving the alert blind.

One incident is one `Alert` row: inserted with state `firing` when it fires, updated in place
when it is re-notified (at most every `ALERT_REPEAT_MINUTES`: current share, peak, severity,
notification count), and closed with state `resolved` and `resolved_at`. Every fire,
re-notification and resolve is published as an `alert` event whose data is the row as
`GET /api/alerts` shows it (`domain.AlertItem`).

One monitor writes per deployment. With a lease (Redis mode) it evaluates only while it
holds it, renews it right before each write, and writes nothing in a check that finds the
lease lost. A new leader picks the firing incident up from the store. Behind all that the
database keeps at most one firing row per alert type (a partial unique index): an insert
that meets another monitor's firing row does nothing, and this monitor adopts that row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.bus import ALERT, Event, Events
from sentiment_platform.config import Settings
from sentiment_platform.domain import AlertItem, Sentiment, utcnow
from sentiment_platform.models.database import Alert
from sentiment_platform.services.alerting.lease import Lease
from sentiment_platform.services.alerting.policy import (
    ALERT_TYPE,
    Action,
    AlertState,
    Decision,
    Policy,
    Sample,
    Severity,
    State,
    evaluate,
)
from sentiment_platform.telemetry import ALERTS_FIRING

log = logging.getLogger(__name__)


class AlertMonitor:
    """Evaluates the window every `ALERT_CHECK_INTERVAL_S`, stores and publishes transitions.

    `lease` is None where one process is the only monitor (the embedded default); otherwise
    the monitor evaluates only while it holds the lease. The caller owns the lease's client.
    """

    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        events: Events,
        lease: Lease | None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._policy = Policy.from_settings(settings)
        self._window_minutes = settings.alert_window_minutes
        self._interval_s = settings.alert_check_interval_s
        self._session_factory = session_factory
        self._events = events
        self._clock = clock
        self._lease = lease
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

    async def run(self) -> None:
        """Check forever; a failed check is logged and retried at the next tick."""
        while True:
            try:
                if await self._lead():
                    await self.check()
            except Exception as error:  # noqa: BLE001 - the monitor must outlive a bad tick
                log.warning(
                    "alert check failed",
                    extra={
                        "event": "alert.check_failed",
                        "error": type(error).__name__,
                        "detail": str(error),
                    },
                )
            await asyncio.sleep(self._interval_s)

    async def _lead(self) -> bool:
        if self._lease is None:
            return True
        was_leader = self._lease.held
        leader = await self._hold()
        if not leader:
            self._state = None  # a later term reloads the incident from the store
        if leader != was_leader:
            log.info(
                "alert monitor leadership changed",
                extra={"event": "alert.leadership", "leader": leader, "key": _key(self._lease)},
            )
        return leader

    async def _hold(self) -> bool:
        """Renew (or take) the lease; an unreachable Redis means not the leader."""
        assert self._lease is not None
        try:
            return await self._lease.hold()
        except (RedisError, OSError) as error:
            log.warning(
                "alert lease unavailable",
                extra={"event": "alert.lease_unavailable", "error": type(error).__name__},
            )
            self._lease.held = False
            return False

    async def _still_leader(self) -> bool:
        """Right before a write: renew a lease this monitor already holds; False if lost."""
        if self._lease is None:
            return True
        if not self._lease.held:
            return False  # never or no longer ours: the next _lead() takes it and reloads
        return await self._hold()

    async def check(self) -> Decision:
        """One evaluation: read the window, step the state machine, store and publish.

        A check that must write but finds the lease lost writes nothing, forgets its state
        (the next leader term reloads it from the store) and returns the state unchanged.
        """
        now = self._clock()
        async with self._session_factory() as session:
            state = self._state if self._state is not None else await _restore(session)
            start = now - timedelta(minutes=self._window_minutes)
            counts = await store.count_window(session, start, now)
            sample = Sample(
                total=sum(counts.values()), negative=counts.get(Sentiment.NEGATIVE.value, 0)
            )
            decision = evaluate(state, sample, now, self._policy)
            if decision.action is not None and not await self._still_leader():
                log.warning(
                    "alert lease lost before writing: nothing written",
                    extra={"event": "alert.lease_lost", "action": str(decision.action)},
                )
                self._state = None
                return Decision(state)
            alert, decision = await self._record(session, state, decision, sample, now)
            await session.commit()
        self._state = decision.state
        ALERTS_FIRING.set(1 if decision.state.state is State.FIRING else 0)
        if alert is not None:
            log.info(
                _ANNOUNCED[decision.action],
                extra={
                    "event": f"alert.{decision.action}",
                    "alert_id": alert.id,
                    "severity": alert.severity,
                    "share": round(sample.share, 4),
                    "total": sample.total,
                },
            )
            item = AlertItem.model_validate(alert).model_dump(mode="json")
            await self._events.publish(Event(ALERT, item))
        return decision

    async def _record(
        self,
        session: AsyncSession,
        before: AlertState,
        decision: Decision,
        sample: Sample,
        now: datetime,
    ) -> tuple[Alert | None, Decision]:
        """Write the incident's row for an action: the row to announce (None: nothing to say)
        and the decision as stored (a fired incident carries its row id)."""
        after, action = decision.state, decision.action
        if action is None:
            return None, decision
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
            fired = await store.insert_firing_alert(
                session,
                alert_type=ALERT_TYPE,
                severity=str(after.severity),
                message=self._firing_message(sample),
                details=facts | _incident_facts(after),
                created_at=now,
            )
            if fired is not None:
                return fired, Decision(replace(after, alert_id=fired.id), action)
            # Another monitor's incident is open: adopt it (it was announced by its writer).
            existing = await store.firing_alert(session, ALERT_TYPE)
            adopted = _state_of(existing) if existing is not None else AlertState()
            log.warning(
                "alert already firing in the store: adopted",
                extra={"event": "alert.adopt", "alert_id": adopted.alert_id},
            )
            return None, Decision(adopted)
        if before.alert_id is None:
            alert = None
        elif action is Action.RENOTIFY:
            alert = await store.update_alert(
                session,
                before.alert_id,
                severity=str(after.severity),
                message=self._firing_message(sample),
                details=facts | _incident_facts(after),
            )
        else:
            alert = await store.update_alert(
                session,
                before.alert_id,
                state=State.RESOLVED.value,
                resolved_at=now,
                message=(
                    f"Resolved: negative share back to {sample.share:.0%} "
                    f"(below {policy.recovery_threshold:.0%}; peak {before.peak_share:.0%})"
                ),
                details={"resolved_share": facts["share"]},
            )
        if alert is None:
            log.warning(
                "alert row missing",
                extra={"event": "alert.missing", "alert_id": before.alert_id, "action": action},
            )
        return alert, decision

    def _firing_message(self, sample: Sample) -> str:
        return (
            f"Negative share {sample.share:.0%} over the last {self._window_minutes} min "
            f"exceeds {self._policy.threshold:.0%} ({sample.negative} of {sample.total} posts)"
        )


_ANNOUNCED = {
    Action.FIRE: "alert fired",
    Action.RENOTIFY: "alert re-notified",
    Action.RESOLVE: "alert resolved",
    None: "alert announced",
}


def _key(lease: Lease) -> str | None:
    return getattr(lease, "key", None)


def _incident_facts(state: AlertState) -> dict[str, Any]:
    return {
        "peak_share": round(state.peak_share, 4),
        "notifications": state.notifications,
        "notified_at": state.notified_at.isoformat() if state.notified_at else None,
    }


async def _restore(session: AsyncSession) -> AlertState:
    """A new leader resumes the open incident, if any, instead of opening a second one."""
    alert = await store.firing_alert(session, ALERT_TYPE)
    return AlertState() if alert is None else _state_of(alert)


def _state_of(alert: Alert) -> AlertState:
    """The firing state an incident's row records."""
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
