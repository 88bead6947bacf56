"""Versioned migrations, recorded in `timestep_schema`, applied once when a store opens.

The migrations are plain PostgreSQL files in `migrations/`, which the JavaScript module applies
the same way. Those a database lacks run inside one transaction holding an advisory lock, each
skipped if its version is already recorded, so two processes (of either language) opening a new
database at once apply it once. A migration must never be edited once released: add a new one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import UndefinedTable
from .base import Store

# 'timestep' as a 64-bit integer: the advisory lock every migrating process takes.
MIGRATION_LOCK = int.from_bytes(b"timestep", "big")
# Its statement, first in every batch that creates schemas, tables or extensions.
LOCK_MIGRATIONS: tuple[str, list[object]] = ("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK])

# The migrations, one file each (NNNN_name.sql, NNNN its version), read by both languages:
# js/backend.mjs applies the same files under the same lock to the same table.
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATIONS: list[tuple[int, str]] = sorted(
    (int(path.name.split("_", 1)[0]), path.read_text(encoding="utf-8")) for path in MIGRATIONS_DIR.glob("*.sql")
)

LATEST = MIGRATIONS[-1][0]
# Names the tables the migrations make: a template data directory made with them is reused
# only while they are unchanged.
SCHEMA_KEY = f"{LATEST}-" + hashlib.sha256(repr(MIGRATIONS).encode()).hexdigest()[:12]


async def current_version(store: Store) -> int:
    """The highest migration applied to this database (0 for a new one)."""
    try:
        return int(await store.fetchval("SELECT coalesce(max(version), 0) FROM timestep_schema"))
    except UndefinedTable:
        return 0


async def migrate(store: Store) -> int:
    """Apply every migration this database lacks; return the version it is now at."""
    applied = await current_version(store)
    if applied >= LATEST:
        return applied
    statements: list[tuple[str, list[object]]] = [
        LOCK_MIGRATIONS,
        (
            "CREATE TABLE IF NOT EXISTS timestep_schema ("
            " version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())",
            [],
        ),
    ]
    for version, sql in MIGRATIONS:
        if version > applied:
            statements.append(
                (
                    "DO $migration$ BEGIN"
                    f" IF NOT EXISTS (SELECT 1 FROM timestep_schema WHERE version = {version}) THEN"
                    f" {sql}"
                    f" INSERT INTO timestep_schema (version) VALUES ({version});"
                    " END IF; END $migration$",
                    [],
                )
            )
    await store.execute_batch(statements)
    return LATEST
