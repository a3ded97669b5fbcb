"""The Host check: which `Host` headers the API serves, and the warnings at start when the
front door is open wider than the loopback.

A DNS-rebinding page reaches us under its own host name; refused (400) before routing, it
can neither post nor open /ws.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.middleware.trustedhost import TrustedHostMiddleware

from sentiment_platform.config import Settings

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
WILDCARD_ADDRESSES = ("0.0.0.0", "::", "[::]")


def install_host_check(app: FastAPI, settings: Settings) -> None:
    """Refuse any Host not in `allowed_hosts(settings)` (400), before routing."""
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings))


def allowed_hosts(settings: Settings) -> list[str]:
    """ALLOWED_HOSTS, else the loopback names and API_HOST. Bound to a wildcard address
    without ALLOWED_HOSTS, any Host is served (and `serve` says so at start)."""
    if settings.allowed_hosts:
        return settings.allowed_hosts
    if settings.api_host in WILDCARD_ADDRESSES:
        return ["*"]
    host = settings.api_host
    extra = [host, f"[{host}]"] if ":" in host and not host.startswith("[") else [host]
    return list(dict.fromkeys([*LOOPBACK_HOSTS, *extra]))


def warn_if_open(settings: Settings) -> None:
    """Say at start who can reach the API and who can write through it."""
    if allowed_hosts(settings) == ["*"]:
        log.warning(
            "no ALLOWED_HOSTS set while listening on every address: any Host header is served",
            extra={"event": "security.any_host", "host": settings.api_host},
        )
    if settings.api_keys:
        log.info(
            "write endpoints require an API key",
            extra={"event": "security.keys", "keys": len(settings.api_keys)},
        )
    elif settings.api_host in ("127.0.0.1", "localhost", "::1"):
        log.info(
            "no API_KEYS set: write endpoints are open to this machine only",
            extra={"event": "security.open_locally"},
        )
    else:
        log.warning(
            "no API_KEYS set: write endpoints are open to anyone who reaches the host",
            extra={"event": "security.open", "host": settings.api_host},
        )
