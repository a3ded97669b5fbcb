"""An app with its lifespan running and an HTTP client on it (ASGI, no network)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.config import Settings


@asynccontextmanager
async def app_client(
    settings: Settings, sessions: async_sessionmaker[AsyncSession] | None = None
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """`create_app(settings, sessions)` started, and a client on it."""
    from sentiment_platform.main import create_app  # imported late, as the fixtures do

    app = create_app(settings, sessions=sessions)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield app, client
