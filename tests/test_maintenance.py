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


async def test_the_wal_stays_bounded_under_constant_writes(tmp_path: Path) -> None:
    """Single-user PostgreSQL never checkpoints by itself: the sidecar does, so old WAL is reused or removed."""
    async with await open_store(pglite_path=tmp_path / "db") as store:
        await store.execute("CREATE TABLE heavy (n int, payload text)")
        for n in range(1100):  # never idle: past the count after which the sidecar checks anyway
            # ~96 KB of WAL per row (random hex does not compress): ~100 MB in all.
            await store.execute(
                "INSERT INTO heavy SELECT $1, (SELECT string_agg(md5(random()::text || i), '') FROM generate_series(1, 3000) i)", n
            )
            if n % 2:
                await store.execute("DELETE FROM heavy WHERE n = $1", n - 1)
        written = await store.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        on_disk = await store.fetchval("SELECT sum(size) FROM pg_ls_waldir()")
    assert written > 100 * 2**20
    assert on_disk <= 80 * 2**20, f"{on_disk / 2**20:.0f} MB of WAL on disk after {written / 2**20:.0f} MB written"
