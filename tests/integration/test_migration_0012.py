"""0012 on PostgreSQL: autovacuum visits `label_rollups` after a few hundred changed cells
(the table's own settings), and a downgrade gives it the server's defaults back."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine
from tests.integration.test_migration_0010 import _migrate
from tests.support.databases import scratch_store

pytestmark = [pytest.mark.asyncio, pytest.mark.postgres]

OPTIONS = "SELECT reloptions FROM pg_class WHERE relname = 'label_rollups'"


async def test_label_rollups_get_their_own_autovacuum_thresholds_and_lose_them_down(
    tmp_path: Path,
) -> None:
    async with scratch_store("postgres", tmp_path, "m0012") as url:
        engine = create_engine(Settings(database_url=url))
        try:
            async with engine.begin() as connection:
                await connection.run_sync(_migrate, "0011")
                assert (await connection.execute(text(OPTIONS))).scalar_one() is None
                await connection.run_sync(_migrate, "0012")
                options = set((await connection.execute(text(OPTIONS))).scalar_one())
                assert options == {
                    "autovacuum_vacuum_threshold=200",
                    "autovacuum_vacuum_scale_factor=0.02",
                    "autovacuum_analyze_threshold=200",
                    "autovacuum_analyze_scale_factor=0.02",
                }
                await connection.run_sync(_migrate, "0011", down=True)
                assert (await connection.execute(text(OPTIONS))).scalar_one() is None
        finally:
            await engine.dispose()
