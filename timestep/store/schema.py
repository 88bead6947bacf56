"""Versioned migrations, recorded in `timestep_schema`, applied once when a store opens.

Each migration runs inside one transaction holding an advisory lock, and is skipped if its
version is already recorded, so two processes opening a new database at once apply it once.
A migration is plain PostgreSQL; it must never be edited once released: add a new one.
"""

from __future__ import annotations

from ..errors import UndefinedTable
from .base import Store

# 'timestep' as a 64-bit integer: the advisory lock every migrating process takes.
MIGRATION_LOCK = int.from_bytes(b"timestep", "big")

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE agent_sessions (
            session_id text PRIMARY KEY,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE agent_messages (
            id bigserial PRIMARY KEY,
            session_id text NOT NULL REFERENCES agent_sessions (session_id) ON DELETE CASCADE,
            message_data jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX agent_messages_session_id_id ON agent_messages (session_id, id);
        """,
    ),
    (
        2,
        """
        CREATE TABLE run_states (
            id bigserial PRIMARY KEY,
            run_id text NOT NULL,
            agent_name text NOT NULL,
            status text NOT NULL,
            pending_approvals integer NOT NULL,
            sdk text NOT NULL,
            schema_version text NOT NULL,
            state jsonb NOT NULL,
            active boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL DEFAULT now(),
            resumed_at timestamptz
        );
        CREATE UNIQUE INDEX run_states_one_active ON run_states (run_id) WHERE active;
        CREATE INDEX run_states_run_id_id ON run_states (run_id, id);
        """,
    ),
    (
        3,
        """
        -- Approvals and rejections recorded without the agent graph (timestep runs approve /
        -- reject): call id -> {"approved": true} or {"approved": false, "message": ...}.
        -- RunStateStore.load() applies them with the SDK's own approve() / reject().
        ALTER TABLE run_states ADD COLUMN decisions jsonb NOT NULL DEFAULT '{}';
        """,
    ),
    (
        4,
        """
        -- Cross-language runs. `sdk` says which SDK wrote the row ('python' or 'javascript'),
        -- `sdk_version` which release. `state` is the Python form, `state_js` the JavaScript
        -- form: the writer's own JSON, plus the other language's when the writer can convert
        -- (Python converts on save; a JavaScript save leaves `state` NULL and Python converts
        -- on load). `conversion_error` says why a Python save has no `state_js`.
        ALTER TABLE run_states ALTER COLUMN state DROP NOT NULL;
        ALTER TABLE run_states ADD COLUMN state_js jsonb;
        ALTER TABLE run_states ADD COLUMN sdk_version text;
        ALTER TABLE run_states ADD COLUMN conversion_error text;
        ALTER TABLE run_states ADD CONSTRAINT run_states_has_state CHECK (state IS NOT NULL OR state_js IS NOT NULL);
        """,
    ),
]

LATEST = MIGRATIONS[-1][0]


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
        ("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]),
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
