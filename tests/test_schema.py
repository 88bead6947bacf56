"""Migrations: applied once, recorded, safe when processes open a new database at once."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from conftest import child_env
from timestep import open_store
from timestep.store import datadir
from timestep.store.datadir import Template
from timestep.store.schema import LATEST, MIGRATIONS, SCHEMA_KEY
from timestep.store.template import write_shipped

pytestmark = pytest.mark.anyio

OPEN_AND_REPORT = """
import asyncio, sys
from timestep import open_store
async def main():
    async with await open_store(sys.argv[1] if sys.argv[1].startswith("postgresql") else None,
                                pglite_path=None if sys.argv[1].startswith("postgresql") else sys.argv[1]) as store:
        print(await store.fetchval("SELECT max(version) FROM timestep_schema"))
asyncio.run(main())
"""


def test_migrations_are_numbered_in_order() -> None:
    versions = [version for version, _ in MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1))


async def test_new_database_is_migrated_once(tmp_path) -> None:
    for _ in range(2):
        async with await open_store(pglite_path=tmp_path) as store:
            rows = await store.fetch("SELECT version FROM timestep_schema ORDER BY version")
            assert [row["version"] for row in rows] == list(range(1, LATEST + 1))


async def test_new_directories_are_copied_with_their_tables(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first new directory on a machine makes the migrated template; later ones are
    copies of it (the same migration rows, applied once, before they existed)."""
    monkeypatch.setenv("TIMESTEP_CACHE_DIR", str(tmp_path / "cache"))  # a machine with no templates yet
    monkeypatch.setattr(datadir, "SHIPPED_DIR", tmp_path / "nothing-shipped")  # and none shipped
    applied = []
    for name in ("first", "second"):
        async with await open_store(pglite_path=tmp_path / name) as store:
            applied.append(await store.fetch("SELECT version, applied_at FROM timestep_schema ORDER BY version"))
        assert (Template().migrated(SCHEMA_KEY) / "PG_VERSION").is_file()
    assert [row["version"] for row in applied[0]] == list(range(1, LATEST + 1))
    assert applied[1] == applied[0]
    assert not [path.name for path in Template().base.iterdir() if path.name.endswith(".tmp")]


async def test_new_databases_come_from_the_shipped_template(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """With a shipped template (a wheel's, or `make setup`'s), a machine with an empty cache
    runs neither initdb nor a migration: directories are extracted from it, an in-memory
    database is loaded from it unzipped, all with the same migration rows as when it was made."""
    shipped = await write_shipped(tmp_path / "shipped")
    monkeypatch.setattr(datadir, "SHIPPED_DIR", shipped.parent)
    monkeypatch.setenv("TIMESTEP_CACHE_DIR", str(tmp_path / "empty-cache"))
    capfd.readouterr()
    rows = [
        await _applied_in(open_store(pglite_path=tmp_path / "first")),
        await _applied_in(open_store(pglite_path=tmp_path / "second")),
        await _applied_in(open_store("memory://")),
    ]
    assert [row["version"] for row in rows[0]] == list(range(1, LATEST + 1))
    assert rows[1] == rows[0] and rows[2] == rows[0]
    assert not list((tmp_path / "empty-cache").rglob("template.tgz"))  # no initdb
    assert not list((tmp_path / "empty-cache").rglob(f"pgdata-schema-{SCHEMA_KEY}"))  # nor a migrated copy
    assert "preparing the embedded database" not in capfd.readouterr().err


async def _applied_in(opening: Any) -> list[dict[str, Any]]:
    async with await opening as store:
        return await store.fetch("SELECT version, applied_at FROM timestep_schema ORDER BY version")


async def test_memory_databases_are_loaded_with_their_tables(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """memory:// loads the migrated template's tar (made the first time one is opened):
    its migration rows predate the store, and none are applied when it opens."""
    monkeypatch.setenv("TIMESTEP_CACHE_DIR", str(tmp_path / "cache"))  # a machine with no templates yet
    applied = []
    for _ in range(2):
        async with await open_store("memory://") as store:
            applied.append(await store.fetch("SELECT version, applied_at FROM timestep_schema ORDER BY version"))
            assert await store.fetchval("SELECT count(*) FROM run_states") == 0  # a table of the latest
    assert [row["version"] for row in applied[0]] == list(range(1, LATEST + 1))
    assert applied[1] == applied[0]
    assert Template().memory_source() == Template().migrated_tarball(SCHEMA_KEY)
    assert not [path.name for path in Template().base.iterdir() if path.name.endswith(".tmp")]


async def test_new_postgres_schema_is_migrated_once(pg_schema_uri: str) -> None:
    for _ in range(2):
        async with await open_store(pg_schema_uri) as store:
            rows = await store.fetch("SELECT version FROM timestep_schema ORDER BY version")
            assert [row["version"] for row in rows] == list(range(1, LATEST + 1))


@pytest.mark.parametrize("backend", ["pglite", "postgres"])
def test_processes_opening_a_new_database_at_once(backend: str, tmp_path, request: pytest.FixtureRequest) -> None:
    target = request.getfixturevalue("pg_schema_uri") if backend == "postgres" else str(tmp_path / "db")
    fresh_cache = {"TIMESTEP_CACHE_DIR": str(tmp_path / "cache")}  # PGlite: they also race to make the templates
    children = [
        subprocess.Popen([sys.executable, "-c", OPEN_AND_REPORT, target], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(**fresh_cache))
        for _ in range(4)
    ]
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
        assert out.strip() == str(LATEST)


async def test_session_items_written_as_jsonb_read_back_after_migration_11(pg_schema_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database made before migration 11 (`message_data jsonb`) keeps its items through it."""
    from timestep import AdvancedSession
    from timestep.store import schema

    before = [(version, sql) for version, sql in MIGRATIONS if version < 11]
    monkeypatch.setattr(schema, "MIGRATIONS", before)
    monkeypatch.setattr(schema, "LATEST", 10)
    items = [{"role": "user", "content": "ünï 😀"}, {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}]
    async with await open_store(pg_schema_uri) as store:
        assert await store.fetchval("SELECT max(version) FROM timestep_schema") == 10
        await store.execute("INSERT INTO agent_sessions (session_id) VALUES ('old')")
        for item in items:
            await store.execute("INSERT INTO agent_messages (session_id, message_data) VALUES ('old', $1)", item)
            await store.execute(
                "INSERT INTO message_structure (session_id, message_id, branch_id, message_type, sequence_number, user_turn_number, branch_turn_number)"
                " SELECT 'old', max(id), 'main', 'x', count(*), 1, 1 FROM agent_messages",
            )
    monkeypatch.undo()
    async with await open_store(pg_schema_uri) as store:
        assert await store.fetchval("SELECT max(version) FROM timestep_schema") == LATEST
        assert await store.fetchval("SELECT pg_typeof(message_data)::text FROM agent_messages LIMIT 1") == "json"
        session = AdvancedSession("old", store=store)
        assert await session.get_items() == items
        assert await session.get_items(branch_id="main") == items
        await session.add_items([{"role": "assistant", "content": "new"}])
        assert (await session.get_items())[-1] == {"role": "assistant", "content": "new"}


async def test_runs_saved_before_migration_13_keep_working(pg_schema_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the run lifecycle's migration, an old `interrupted` run is claimable, and an old
    `saved` run (nothing pending) reads as `finished` and cannot be resumed."""
    import banker
    from timestep.errors import RunNotResumable
    from timestep.run_state import RunStateStore
    from timestep.runner import run_agent
    from timestep.store import schema
    from timestep.testing import FakeModelServer, call, text

    monkeypatch.setattr(schema, "MIGRATIONS", [(version, sql) for version, sql in MIGRATIONS if version < 13])
    monkeypatch.setattr(schema, "LATEST", 12)
    with FakeModelServer([call("wire_money", {"amount": 5}), text("Hello."), text("Sent 5.")]) as server:
        agent = banker.make_agent(server.base_url)
        async with await open_store(pg_schema_uri) as store:
            assert await store.fetchval("SELECT max(version) FROM timestep_schema") == 12
            paused = await run_agent(agent, "send 5", None)
            await RunStateStore(agent, "old-paused", store=store).save(paused.to_state())
            done = await run_agent(agent, "hi", None)
            await store.execute(  # as timestep saved a run with nothing pending before
                "SELECT timestep_save_run_state('old-done', 'banker', 'saved', 0, 'python', NULL, '1.21', $1, NULL, NULL)",
                RunStateStore(agent, "old-done", store=store).encode(done.to_state()).state,
            )
        monkeypatch.undo()
        async with await open_store(pg_schema_uri) as store:
            assert await store.fetchval("SELECT max(version) FROM timestep_schema") == LATEST
            assert (await RunStateStore.find_run("old-done", store)).status == "finished"
            old_done = RunStateStore(agent, "old-done", store=store)
            with pytest.raises(RunNotResumable) as refused:
                await old_done.load()
            assert refused.value.reason == "finished"
            old_paused = RunStateStore(agent, "old-paused", store=store)
            state = await old_paused.load()
            state.approve(state.get_interruptions()[0])
            banker.executed.clear()
            result = await run_agent(agent, state, None, run_store=old_paused)
            assert result.final_output == "Sent 5." and banker.executed == ["wire_money 5.0"]
            assert (await RunStateStore.find_run("old-paused", store)).status == "finished"
