"""Opening incidents many times on one connection: PostgreSQL switches a prepared statement
to a generic plan after five runs, where an `ON CONFLICT … WHERE state = $1` no longer
matches the partial index (`there is no unique or exclusion constraint matching the ON
CONFLICT specification`). The predicate is a literal, so the sixth fire works too."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from sentiment_platform import store

pytestmark = pytest.mark.asyncio

T0 = datetime.fromisoformat("2026-03-01T12:00:00+00:00")


async def test_the_tenth_incident_opens_like_the_first(database) -> None:
    _, sessions = database
    async with sessions() as session:
        for n in range(10):
            alert = await store.insert_firing_alert(
                session,
                alert_type="negative_spike",
                severity="warning",
                message=f"incident {n}",
                details={},
                created_at=T0 + timedelta(minutes=n),
            )
            assert alert is not None
            again = await store.insert_firing_alert(
                session,
                alert_type="negative_spike",
                severity="warning",
                message="a second monitor",
                details={},
                created_at=T0 + timedelta(minutes=n),
            )
            assert again is None  # one firing row per type
            await store.update_alert(session, alert.id, state="resolved")
        await session.commit()
