"""Dependencies the endpoints declare, as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform.bus import Bus
from sentiment_platform.config import Settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session, one unit of work, per request; committed by the endpoint that writes."""
    async with request.app.state.session_factory() as session:
        yield session


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_bus(request: Request) -> Bus:
    return request.app.state.bus


SessionDep = Annotated[AsyncSession, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
BusDep = Annotated[Bus, Depends(get_bus)]
