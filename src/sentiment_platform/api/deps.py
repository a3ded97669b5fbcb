"""Dependencies the endpoints declare, as `Annotated` aliases: what a handler needs is in its
signature. The only place besides `main` that reads `app.state` (`app.state.api`).

Every dependency is `async def`: FastAPI runs a plain `def` one in the thread pool, a thread
hop per dependency per request (five of them on a posts page)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from sentiment_platform.api.answer_cache import SingleFlightCache
from sentiment_platform.api.background import Background
from sentiment_platform.api.fresh_answers import FreshAnswers
from sentiment_platform.api.hub import Hub
from sentiment_platform.api.label_writes import LabelWrites
from sentiment_platform.api.schemas import Checks
from sentiment_platform.api.security import KeyRing, RateLimiter, api_key_header, digest
from sentiment_platform.bus import Bus
from sentiment_platform.config import Settings
from sentiment_platform.db import POOL_TIMEOUT_S
from sentiment_platform.errors import ServiceUnavailable, Unauthorized
from sentiment_platform.runtime import Runtime
from sentiment_platform.services.analysis.model_switch import ModelCheck

HEALTH_CACHE_S = 1.0  # how long /api/health shares a clean answer, per process
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # counted in batches (api/security.py)


@dataclass(frozen=True, slots=True)
class ApiParts:
    """What the API process runs on top of the runtime; built by the lifespan."""

    runtime: Runtime
    # The sessions requests use: the runtime's; the tests' open inside a rolled-back transaction
    sessions: async_sessionmaker[AsyncSession]
    hub: Hub
    key_ring: KeyRing
    rate_limiter: RateLimiter
    http_metrics: CollectorRegistry  # this app's request metrics
    # Requests holding a session at once (DB_POOL_SIZE), admitted in arrival order (`session`)
    session_gate: asyncio.Semaphore
    background: Background = field(default_factory=Background)  # tasks restarted or reported
    # /api/health's last clean checks of the store and the bus (api/probes.py)
    health_cache: SingleFlightCache[Checks] = field(
        default_factory=lambda: SingleFlightCache(HEALTH_CACHE_S)
    )
    # Encoded /api/alerts pages, shared for METRICS_CACHE_S; dropped when an alert fires or
    # resolves anywhere (the hub hears it) or a rule's alerts are closed here.
    alerts_cache: SingleFlightCache[bytes] = field(default_factory=lambda: SingleFlightCache(0))
    # Metrics answers relative to now and page totals, shared for METRICS_CACHE_S; an expired
    # one serves while it is recomputed.
    counts_cache: SingleFlightCache[object] = field(default_factory=lambda: SingleFlightCache(0))
    # Which of those answers a GET's query string, for `FreshAnswersMiddleware`
    fresh_answers: FreshAnswers = field(default_factory=FreshAnswers)
    # Label PUTs written together (group commit)
    label_writes: LabelWrites = field(default_factory=LabelWrites)
    # Redis mode: whether the workers' activated models load, for /api/health (api/probes.py)
    model_check: ModelCheck | None = None
    # PostgreSQL: the metrics reads' own pool, whose statements are planned once (`reading`)
    generic_reads: AsyncEngine | None = None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session from `sessions`, once `session_gate` admits it (`admitted`)."""
        async with self.admitted(), self.sessions() as session:
            yield session

    @asynccontextmanager
    async def reading(self, generic: bool = False) -> AsyncIterator[AsyncConnection]:
        """A bare connection for a request that only reads, admitted as a session is: a read
        needs no unit of work, and an ORM session opened and closed around it is pure cost on
        the hottest endpoints. It is the connection `sessions` is bound to: from the engine's
        pool, or the tests' one connection (inside their rolled-back transaction); with
        `generic`, from `generic_reads` where there is one (its plans are made once)."""
        bind = self.sessions.kw["bind"]
        async with self.admitted():
            if isinstance(bind, AsyncConnection):
                yield bind
            else:
                engine = self.generic_reads if generic and self.generic_reads else bind
                async with engine.connect() as connection:
                    yield connection

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """At most DB_POOL_SIZE requests hold the database at a time, in the order they came.
        SQLAlchemy's pool gives a returned connection to whichever task asks first, and a
        waiter that loses the race queues again at the back: under load an early request
        could wait out the pool timeout (503) while later ones were served, and connections
        over the pool size were opened and closed again and again."""
        gate = self.session_gate
        if not gate.locked():
            await gate.acquire()  # free: taken at once, without wait_for's extra task
        else:
            try:
                await asyncio.wait_for(gate.acquire(), POOL_TIMEOUT_S)
            except TimeoutError:
                raise ServiceUnavailable(
                    f"every database connection was busy for {POOL_TIMEOUT_S} s; retry shortly"
                ) from None
        try:
            yield
        finally:
            gate.release()


def parts_of(app: FastAPI) -> ApiParts:
    """The app's runtime and API parts, once its lifespan has started (tests reach in)."""
    parts: ApiParts = app.state.api
    return parts


def _parts(connection: HTTPConnection) -> ApiParts:
    parts: ApiParts = connection.app.state.api
    return parts


# Each dependency reads the app's parts itself rather than through another dependency: FastAPI
# walks the whole graph on every request, so a chain settings → runtime → parts would cost
# three nodes where one does.
async def get_api(connection: HTTPConnection) -> ApiParts:
    return _parts(connection)


ApiDep = Annotated[ApiParts, Depends(get_api)]


async def get_session(connection: HTTPConnection) -> AsyncIterator[AsyncSession]:
    """One session, one unit of work, per request (`ApiParts.session`); committed by the
    endpoint that writes."""
    async with _parts(connection).session() as session:
        yield session


async def get_settings(connection: HTTPConnection) -> Settings:
    return _parts(connection).runtime.settings


async def get_bus(connection: HTTPConnection) -> Bus:
    return _parts(connection).runtime.bus


SessionDep = Annotated[AsyncSession, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
BusDep = Annotated[Bus, Depends(get_bus)]
ApiKey = Annotated[str | None, Depends(api_key_header)]


async def require_api_key(api: ApiDep, key: ApiKey) -> None:
    """Guard for write endpoints: a valid X-API-Key when API_KEYS is set."""
    ring = api.key_ring
    if not ring.enabled:
        return
    if key is None or not ring.accepts(key):
        raise Unauthorized(
            "a valid X-API-Key header is required for this endpoint", scheme="APIKey"
        )


async def has_api_key(connection: HTTPConnection) -> bool:
    """Whether the caller presented a valid X-API-Key: what a read needs to see a rule's
    whole webhook URL. Never true while API_KEYS is unset (there is no key to present).
    The header is read, not declared: declared, OpenAPI would say the read requires it."""
    ring = _parts(connection).key_ring
    key = connection.headers.get(api_key_header.model.name)
    return key is not None and ring.enabled and ring.accepts(key)


KeyHolderDep = Annotated[bool, Depends(has_api_key)]


async def rate_limit(request: Request) -> None:
    """Per-caller limit on every API call: by valid key when one is sent, else by client IP.
    Declared only while the limit is on (`create_app`).

    An invalid key counts against the IP, so inventing keys buys no fresh budget.
    """
    api = _parts(request)
    ring = api.key_ring
    key = request.headers.get(api_key_header.model.name)  # read, not declared: reads need none
    if key and ring.enabled and ring.accepts(key):
        caller = "key:" + digest(key).hex()[:16]
    else:
        caller = "ip:" + client_network(request.client.host if request.client else "unknown")
    await api.rate_limiter.check(caller, write=request.method not in READ_METHODS)


def client_network(host: str) -> str:
    """What one caller is for the rate limit: an IPv4 address, or an IPv6 address's /64 (the
    block one subscriber gets, so cycling through its addresses buys no fresh budget)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
