"""Alert rules and an alert's detail: `/api/alert-rules` and `/api/alerts/{id}`.

Writes need `X-API-Key` when `API_KEYS` is set. The built-in rule (id 0, from the ALERT_*
settings) is listed and readable but not writable (409). A rule's `webhook_secret` is
stored and never returned (`has_secret`); its `webhook_url` is shown whole only to a caller
with a valid API key, to anyone else masked (`https://host/…`: the path and query of many
webhook URLs are their credential), and a PUT that sends the rule's masked URL back keeps
the stored one. Mounted by `main` next to `routes.router`, with
the same rate limit. Errors are raised as `errors.py`'s classes (`NotFound`, `Conflict`).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Response, status
from fastapi.exceptions import RequestValidationError

from sentiment_platform import store
from sentiment_platform.api.deps import (
    ApiDep,
    KeyHolderDep,
    SessionDep,
    SettingsDep,
    require_api_key,
)
from sentiment_platform.api.schemas import (
    MAX_ID,
    AlertDetail,
    DeliveryView,
    RulesPage,
    TermView,
    problems,
)
from sentiment_platform.config import Settings
from sentiment_platform.domain import AlertItem, utcnow
from sentiment_platform.errors import Conflict, NotFound
from sentiment_platform.models.alerting import AlertRule, WebhookDelivery
from sentiment_platform.rule_spec import (
    BUILTIN_RULE_ID,
    RuleSpec,
    RuleView,
    is_masked_url,
    mask_webhook_url,
)
from sentiment_platform.services.alerting.destinations import UnsafeWebhookUrl, check_destination

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", responses=problems(422, 429, 503), tags=["alert rules"])

RuleId = Annotated[int, Path(ge=0, le=MAX_ID, description="0 is the built-in rule")]
AlertId = Annotated[int, Path(ge=1, le=MAX_ID)]
GUARD = [Depends(require_api_key)]
WRITE_ERRORS = problems(400, 401, 404, 409, 413)  # 400: a body that is not JSON
READ_ONLY = (
    "the built-in rule (id 0) is read-only: it is configured by ALERT_THRESHOLD, "
    "ALERT_WINDOW_MINUTES, ALERT_MIN_POSTS and ALERT_WEBHOOK_URL"
)


def _invalid(field: str | None, message: str) -> RequestValidationError:
    """A 422 naming the field, in the shape every other validation error has."""
    loc = ("body", field) if field else ("body",)
    return RequestValidationError([{"loc": loc, "msg": message, "type": "value_error"}])


async def _check_webhook(spec: RuleSpec, settings: Settings) -> None:
    if spec.webhook_url is not None:
        try:
            await check_destination(spec.webhook_url, settings.webhook_allow_private)
        except UnsafeWebhookUrl as error:
            raise _invalid("webhook_url", str(error)) from None


MASKED_URL = (
    "is a masked URL (as the rules are shown without an API key); it can only stand for the "
    "rule's own webhook_url, unchanged: send the full URL"
)


def _unmasked(spec: RuleSpec, stored: AlertRule | None) -> RuleSpec:
    """The spec with a masked `webhook_url` replaced by the stored URL it stands for: a rule
    read without a key and PUT back keeps its webhook. A masked URL that stands for nothing
    (a new rule, another host) is a 422: saved, it would be a URL that reaches nobody."""
    url = spec.webhook_url
    if url is None or not is_masked_url(url):
        return spec
    if stored is None or stored.webhook_url is None or mask_webhook_url(stored.webhook_url) != url:
        raise _invalid("webhook_url", MASKED_URL)
    return spec.model_copy(update={"webhook_url": stored.webhook_url})


def _shown(view: RuleView, key_holder: bool) -> RuleView:
    return view if key_holder else view.masked()


def _not_found(rule_id: int) -> NotFound:
    return NotFound(f"no alert rule {rule_id}")


@router.get("/alert-rules", response_model=RulesPage)
async def list_rules(
    session: SessionDep, settings: SettingsDep, key_holder: KeyHolderDep
) -> RulesPage:
    """Every rule; `webhook_url` masked unless the caller sends a valid `X-API-Key`."""
    rules = [store.rule_view(rule) for rule in await store.list_rules(session)]
    items = [_shown(view, key_holder) for view in [store.builtin_rule(settings), *rules]]
    return RulesPage(items=items, total=len(items), max_rules=settings.max_alert_rules)


@router.post(
    "/alert-rules",
    status_code=status.HTTP_201_CREATED,
    response_model=RuleView,
    dependencies=GUARD,
    responses=WRITE_ERRORS,
)
async def create_rule(
    session: SessionDep,
    settings: SettingsDep,
    key_holder: KeyHolderDep,
    spec: Annotated[RuleSpec, Body()],
) -> RuleView:
    """A new rule; it watches the posts analysed from now on."""
    if await store.count_rules(session) >= settings.max_alert_rules:
        raise _invalid(
            None,
            f"at most {settings.max_alert_rules} alert rules (MAX_ALERT_RULES); delete one first",
        )
    spec = _unmasked(spec, None)
    await _check_webhook(spec, settings)
    rule = await store.create_rule(session, spec, utcnow())
    view = store.rule_view(rule)
    await session.commit()
    log.info("alert rule created", extra={"event": "rules.created", "rule_id": view.id})
    return _shown(view, key_holder)


@router.get("/alert-rules/{rule_id}", response_model=RuleView, responses=problems(404))
async def get_rule(
    session: SessionDep, settings: SettingsDep, key_holder: KeyHolderDep, rule_id: RuleId
) -> RuleView:
    """One rule; `webhook_url` masked unless the caller sends a valid `X-API-Key`."""
    if rule_id == BUILTIN_RULE_ID:
        return _shown(store.builtin_rule(settings), key_holder)
    rule = await store.get_rule(session, rule_id)
    if rule is None:
        raise _not_found(rule_id)
    return _shown(store.rule_view(rule), key_holder)


@router.put(
    "/alert-rules/{rule_id}", response_model=RuleView, dependencies=GUARD, responses=WRITE_ERRORS
)
async def replace_rule(
    session: SessionDep,
    settings: SettingsDep,
    key_holder: KeyHolderDep,
    rule_id: RuleId,
    spec: Annotated[RuleSpec, Body()],
) -> RuleView:
    """Replace a rule; a `webhook_secret` left out of the body is kept, `null` removes it,
    and a `webhook_url` sent back masked (as read without a key) keeps the stored URL."""
    if rule_id == BUILTIN_RULE_ID:
        raise Conflict(READ_ONLY)
    rule = await store.get_rule(session, rule_id)
    if rule is None:
        raise _not_found(rule_id)
    spec = _unmasked(spec, rule)
    await _check_webhook(spec, settings)
    view = store.rule_view(await store.update_rule(session, rule, spec, utcnow()))
    await session.commit()
    log.info("alert rule replaced", extra={"event": "rules.replaced", "rule_id": rule_id})
    return _shown(view, key_holder)


@router.delete(
    "/alert-rules/{rule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=GUARD,
    responses=WRITE_ERRORS,
)
async def delete_rule(session: SessionDep, api: ApiDep, rule_id: RuleId) -> Response:
    """Delete a rule: it raises no more alerts and its pending notifications are cancelled;
    its past alerts stay (with its name)."""
    if rule_id == BUILTIN_RULE_ID:
        raise Conflict(READ_ONLY)
    if not await store.delete_rule(session, rule_id, utcnow()):
        raise _not_found(rule_id)
    await session.commit()
    api.alerts_cache.drop()  # its open alert was closed
    log.info("alert rule deleted", extra={"event": "rules.deleted", "rule_id": rule_id})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/alerts/{alert_id}", response_model=AlertDetail, responses=problems(404))
async def get_alert(session: SessionDep, alert_id: AlertId) -> AlertDetail:
    """One alert with its explanation (terms, example posts) and its webhook deliveries."""
    alert = await store.get_alert(session, alert_id)
    if alert is None:
        raise NotFound(f"no alert {alert_id}")
    item = AlertItem.model_validate(alert)
    details: dict[str, Any] = item.details or {}
    example_ids = [str(post_id) for post_id in details.get("examples", [])][:5]
    return AlertDetail(
        **item.model_dump(),
        terms=[TermView.model_validate(term) for term in details.get("terms", [])],
        examples=await store.posts_by_ids(session, example_ids),
        deliveries=[_delivery(d) for d in await store.alert_deliveries(session, alert_id)],
    )


def _delivery(row: WebhookDelivery) -> DeliveryView:
    delivered = row.status is not None and 200 <= row.status < 300 and row.done
    return DeliveryView(
        id=row.id,
        event=str(row.payload.get("event", "")),
        created_at=row.created_at,
        done=row.done,
        delivered=delivered,
        attempt=row.attempt,
        status=row.status,
        error=row.error,
        next_attempt_at=None if row.done else row.next_attempt_at,
        attempts=row.attempts,
    )
