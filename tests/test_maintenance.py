"""PGlite runs no autovacuum worker: the sidecar vacuums the tables it wrote, so they stay small.

A queue of rows (insert one, delete the oldest), as run states retired and re-inserted or
sessions trimmed are: without VACUUM the free space map never learns of the deleted rows'
space, and every insert extends the table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from timestep import open_store

pytestmark = pytest.mark.anyio


async def test_tables_that_churn_stay_small(tmp_path: Path) -> None:
    async with await open_store(pglite_path=tmp_path / "db") as store:
        await store.execute("CREATE TABLE queue (id bigserial PRIMARY KEY, payload text NOT NULL)")
        payload = "x" * 1000
        for n in range(6000):  # 6,000 writes: past the count after which the sidecar checks even when never idle
            await store.execute("INSERT INTO queue (payload) VALUES ($1)", payload)
            if n >= 100:
                await store.execute("DELETE FROM queue WHERE id = (SELECT min(id) FROM queue)")
        live = await store.fetchval("SELECT count(*) FROM queue")
        size = await store.fetchval("SELECT pg_relation_size('queue')")
        vacuumed = await store.fetchval("SELECT vacuum_count + autovacuum_count FROM pg_stat_user_tables WHERE relname = 'queue'")
    assert live == 100
    # 6,000 rows of 1 KB were written; without VACUUM the table holds them all (measured: 6.7 MB).
    assert size < 1 << 20, f"the queue of 100 rows takes {size / 1024:.0f} KB"
    assert vacuumed >= 1
