"""The alert monitor: every `ALERT_CHECK_INTERVAL_S`, for the built-in rule and every rule
in `alert_rules`, read the window's counts, step the rule's policy, store, notify and publish
what changed.

Rules are evaluated from `rule_counts` only (per rule, per minute of ANALYSIS, per sentiment
and emotion; added by the worker with each saved batch), never by reading posts: a check
costs one or two indexed reads per rule. By analysis time, not creation time: when the
workers run behind, a backlog older than the window is counted as it is analysed, so a
backlog of negative posts fires within one check instead of leaving the alert blind. How
each metric is measured: `evaluation`.

Each rule has its own `AlertState` and its own incidents (`alert_type` from
`rules.rule_alert_type`, so the one-firing-row index holds per rule). A fire records the
explanation (`explain_alert`); every fire, re-notification and resolve queues the rule's
webhook notification in the same transaction, and `notify.Notifier`, a task of its own,
sends them while this monitor leads. A deleted rule's open incident is closed and its
pending notifications cancelled (`store.delete_rule`; a check closes any it missed).

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
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.bus import ALERT, Event, Events
from sentiment_platform.config import Settings
from sentiment_platform.domain import AlertItem, utcnow
from sentiment_platform.models.alerting import Alert
from sentiment_platform.retry import cancel_and_wait
from sentiment_platform.rule_spec import BUILTIN_RULE_ID, RuleView
from sentiment_platform.services.alerting.estimated import Estimator, load_estimator
from sentiment_platform.services.alerting.evaluation import measure, record, state_of
from sentiment_platform.services.alerting.leadership import Lease
from sentiment_platform.services.alerting.notify import Notifier
from sentiment_platform.services.alerting.policy import (
    Action,
    AlertState,
    Decision,
    Policy,
    State,
    evaluate,
)
from sentiment_platform.services.analysis.quantification import Confusion, load_confusion
from sentiment_platform.telemetry import ALERTS_FIRING

log = logging.getLogger(__name__)


class AlertMonitor:
    """Evaluates every rule every `ALERT_CHECK_INTERVAL_S`, stores, notifies and publishes
    transitions.

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
        self._settings = settings
        self._interval_s = settings.alert_check_interval_s
        self._session_factory = session_factory
        self._events = events
        self._clock = clock
        self._lease = lease
        self._shipped = _shipped(settings)
        # Per rule id; None until loaded from the store as leader.
        self._states: dict[int, AlertState] | None = None
        self.decisions: dict[int, Decision] = {}  # the last check's, per rule id
        self._pruned_at: datetime | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.notifier = Notifier(settings, session_factory, clock, lambda: self.is_leader)

    @property
    def state(self) -> AlertState | None:
        """The built-in rule's state."""
        return None if self._states is None else self._states.get(BUILTIN_RULE_ID)

    @property
    def states(self) -> dict[int, AlertState]:
        return dict(self._states or {})

    @property
    def is_leader(self) -> bool:
        return self._lease is None or self._lease.held

    def start(self) -> list[asyncio.Task[None]]:
        """Start evaluating and delivering; returns the two loops' tasks (health reports them)."""
        self._tasks = [
            asyncio.create_task(self.run(), name="alert-monitor"),
            asyncio.create_task(self.notifier.run(self._interval_s), name="alert-webhooks"),
        ]
        return self._tasks

    async def deliver(self) -> int:
        """One round of webhook deliveries (what the sender task does each tick)."""
        return await self.notifier.deliver()

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        await self.notifier.aclose()
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
            self._states = None  # a later term reloads the incidents from the store
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
        """One evaluation of every rule; returns the built-in rule's decision (every rule's:
        `decisions`). Each rule that must write does so in a transaction of its own; one
        that finds the lease lost writes nothing, and the monitor forgets its states (the
        next leader term reloads them from the store)."""
        now = self._clock()
        self.decisions = {}
        async with self._session_factory() as session:
            rules = [store.builtin_rule(self._settings)]
            rules += [store.rule_view(rule) for rule in await store.list_rules(session)]
            firing = await store.firing_alerts(session)
            if self._states is None:
                self._states = {_rule_of(alert): state_of(alert) for alert in firing}
            live = {rule.id for rule in rules}
            self._states = {k: v for k, v in self._states.items() if k in live}
            orphans = [alert for alert in firing if _rule_of(alert) not in live]
            if orphans and await self._still_leader():
                for rule_id in {_rule_of(alert) for alert in orphans}:
                    await store.close_rule_alerts(session, rule_id, now)
                await session.commit()
            estimator = None
            if self._settings.alert_on == "estimated":  # once a check, for every rule
                estimator = await load_estimator(
                    session,
                    now,
                    min_labels=self._settings.min_estimate_labels,
                    shipped=self._shipped,
                )
            for rule in rules:
                if self._states is None:
                    break  # the lease was lost: nothing more is written this check
                try:
                    self.decisions[rule.id] = await self._check_rule(session, rule, now, estimator)
                except Exception as error:  # noqa: BLE001 - one rule's failure is its own
                    await session.rollback()
                    log.warning(
                        "alert rule check failed",
                        extra={
                            "event": "alert.rule_check_failed",
                            "rule_id": rule.id,
                            "error": type(error).__name__,
                            "detail": str(error)[:300],
                        },
                    )
            await self._prune(session, rules, now)
        states = self._states or {}
        ALERTS_FIRING.set(sum(state.state is State.FIRING for state in states.values()))
        return self.decisions.get(BUILTIN_RULE_ID, Decision(states.get(0, AlertState())))

    async def _check_rule(
        self, session: AsyncSession, rule: RuleView, now: datetime, estimator: Estimator | None
    ) -> Decision:
        assert self._states is not None
        state = self._states.get(rule.id, AlertState())
        policy = Policy.for_rule(rule, self._settings)
        estimator = estimator if rule.metric == "negative_share" else None
        measured = await measure(session, rule, now, policy, estimator)
        decision = evaluate(state, measured.sample, now, policy)
        if decision.action is not None and not await self._still_leader():
            log.warning(
                "alert lease lost before writing: nothing written",
                extra={"event": "alert.lease_lost", "action": str(decision.action)},
            )
            self._states = None
            return Decision(state)
        alert, decision = await record(session, rule, policy, state, decision, measured, now)
        if decision.action is not None:
            await session.commit()
        self._states[rule.id] = decision.state
        if decision.action is not None and alert is None and decision.action is not Action.FIRE:
            log.warning(
                "alert row missing",
                extra={"event": "alert.missing", "alert_id": state.alert_id, "rule_id": rule.id},
            )
        if alert is not None:
            log.info(
                _ANNOUNCED[decision.action],
                extra={
                    "event": f"alert.{decision.action}",
                    "alert_id": alert.id,
                    "rule_id": rule.id,
                    "severity": alert.severity,
                    "share": round(measured.sample.share, 4),
                    "total": measured.sample.total,
                },
            )
            item = AlertItem.model_validate(alert).model_dump(mode="json")
            await self._events.publish(Event(ALERT, item))
        return decision

    async def _prune(self, session: AsyncSession, rules: list[RuleView], now: datetime) -> None:
        """Every `PRUNE_EVERY`, drop the counts no rule reads any more (24 h + its window)."""
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        if not await self._still_leader():
            return
        longest = max(rule.window_minutes for rule in rules)
        before = store.floor_minute(now) - store.BASELINE - timedelta(minutes=longest + 1)
        removed = await store.prune_rule_counts(session, before)
        await session.commit()
        self._pruned_at = now
        log.debug("rule counts pruned", extra={"event": "alert.pruned", "rows": removed})


PRUNE_EVERY = timedelta(minutes=10)

_ANNOUNCED = {
    Action.FIRE: "alert fired",
    Action.RENOTIFY: "alert re-notified",
    Action.RESOLVE: "alert resolved",
    None: "alert announced",
}


def _key(lease: Lease) -> str | None:
    return getattr(lease, "key", None)


def _rule_of(alert: Alert) -> int:
    return BUILTIN_RULE_ID if alert.rule_id is None else alert.rule_id


def _shipped(settings: Settings) -> Confusion | None:
    """The embedded model's confusion matrix when `ALERT_ON=estimated`: what an estimate
    falls back to while there are too few random labels (None: counted then)."""
    if settings.alert_on != "estimated":
        return None
    confusion = load_confusion()
    if confusion is None:
        log.warning(
            "ALERT_ON=estimated but the model ships no confusion matrix: counted until there"
            " are MIN_ESTIMATE_LABELS random labels",
            extra={"event": "alert.estimated_unavailable"},
        )
    return confusion
