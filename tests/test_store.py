"""The Store API behaves the same on both backends: results, counts, batches, errors."""

from __future__ import annotations

import asyncio

import pytest

from timestep import open_store
from timestep.errors import (
    DatabaseError,
    SQLSyntaxError,
    StoreClosed,
    UndefinedColumn,
    UndefinedTable,
    UniqueViolation,
)
from timestep.errors import ConfigurationError
from timestep.store import Store

from conftest import require_postgres

pytestmark = pytest.mark.anyio


async def test_fetch_shapes(store: Store, table: str) -> None:
    await store.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text)")
    assert await store.fetch(f"SELECT * FROM {table}") == []
    assert await store.fetchrow(f"SELECT * FROM {table}") is None
    assert await store.fetchval(f"SELECT name FROM {table}") is None
    await store.execute_batch([(f"INSERT INTO {table} VALUES ($1, $2)", [i, f"n{i}"]) for i in range(3)])
    assert await store.fetch(f"SELECT id, name FROM {table} ORDER BY id") == [
        {"id": 0, "name": "n0"},
        {"id": 1, "name": "n1"},
        {"id": 2, "name": "n2"},
    ]
    assert await store.fetchrow(f"SELECT name, id FROM {table} WHERE id = $1", 1) == {"name": "n1", "id": 1}
    assert await store.fetchval(f"SELECT count(*) FROM {table}") == 3


async def test_execute_counts_rows(store: Store, table: str) -> None:
    assert await store.execute(f"CREATE TABLE {table} (id int, v text)") == 0
    assert await store.execute(f"INSERT INTO {table} SELECT g, 'x' FROM generate_series(1, 5) g") == 5
    assert await store.execute(f"UPDATE {table} SET v = $1 WHERE id > $2", "y", 2) == 3
    assert await store.execute(f"DELETE FROM {table} WHERE id = $1", 99) == 0
    assert await store.execute(f"SELECT * FROM {table}") == 5
    assert await store.execute(f"DELETE FROM {table} WHERE id <= $1 RETURNING id", 2) == 2


async def test_batch_returns_counts_and_commits(store: Store, table: str) -> None:
    counts = await store.execute_batch(
        [
            (f"CREATE TABLE {table} (id int PRIMARY KEY)", []),
            (f"INSERT INTO {table} SELECT generate_series(1, 4)", []),
            (f"DELETE FROM {table} WHERE id > $1", [2]),
        ]
    )
    assert counts == [0, 4, 2]
    assert await store.fetchval(f"SELECT count(*) FROM {table}") == 2
    assert await store.execute_batch([]) == []


async def test_failing_statement_rolls_back_the_whole_batch(store: Store, table: str) -> None:
    await store.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    await store.execute(f"INSERT INTO {table} VALUES (1)")
    with pytest.raises(UniqueViolation) as caught:
        await store.execute_batch(
            [
                (f"INSERT INTO {table} VALUES ($1)", [2]),
                (f"UPDATE {table} SET id = 10 WHERE id = 1", []),
                (f"INSERT INTO {table} VALUES ($1)", [2]),
                (f"INSERT INTO {table} VALUES ($1)", [3]),
            ]
        )
    assert caught.value.sqlstate == "23505"
    assert caught.value.statement_index == 2
    assert "rolled back" in str(caught.value)
    assert await store.fetch(f"SELECT id FROM {table}") == [{"id": 1}]


@pytest.mark.parametrize(
    ("sql", "error", "sqlstate", "fragment"),
    [
        ("SELEC 1", SQLSyntaxError, "42601", 'syntax error at or near "SELEC"'),
        ("SELECT * FROM no_such_table_here", UndefinedTable, "42P01", "no_such_table_here"),
        ("SELECT no_such_column FROM pg_class", UndefinedColumn, "42703", "no_such_column"),
        ("SELECT 1/0", DatabaseError, "22012", "division by zero"),
    ],
)
async def test_sql_errors_are_typed(store: Store, sql: str, error: type[DatabaseError], sqlstate: str, fragment: str) -> None:
    with pytest.raises(error) as caught:
        await store.fetch(sql)
    assert caught.value.sqlstate == sqlstate
    assert fragment in caught.value.message
    assert await store.fetchval("SELECT 41 + 1") == 42  # still serving


async def test_unique_violation_carries_detail(store: Store, table: str) -> None:
    await store.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    await store.execute(f"INSERT INTO {table} VALUES (7)")
    with pytest.raises(UniqueViolation) as caught:
        await store.execute(f"INSERT INTO {table} VALUES ($1)", 7)
    assert "duplicate key value violates unique constraint" in caught.value.message
    assert caught.value.detail == "Key (id)=(7) already exists."


async def test_execute_script_runs_many_statements(store: Store, table: str) -> None:
    await store.execute_script(
        f"CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (1); INSERT INTO {table} VALUES (2);"
    )
    assert await store.fetchval(f"SELECT sum(id) FROM {table}") == 3
    with pytest.raises(SQLSyntaxError):
        await store.execute_script("SELECT 1; SELEC 2;")


async def test_many_requests_in_flight(store: Store, table: str) -> None:
    await store.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
    await asyncio.gather(*(store.execute(f"INSERT INTO {table} VALUES ($1, $2)", i, str(i)) for i in range(300)))
    results = await asyncio.gather(*(store.fetchval(f"SELECT v FROM {table} WHERE id = $1", i) for i in range(300)))
    assert results == [str(i) for i in range(300)]


async def test_a_repeated_query_reads_its_table_as_it_now_is(store: Store, table: str) -> None:
    """Statements run again and again are prepared (the sidecar prepares a statement on its
    second run, psycopg on its sixth); a table whose columns change under them is read anew."""
    await store.execute(f"CREATE TABLE {table} (id int)")
    await store.execute(f"INSERT INTO {table} VALUES (1)")
    for _ in range(6):
        assert await store.fetch(f"SELECT * FROM {table}") == [{"id": 1}]
        assert await store.execute_batch([(f"UPDATE {table} SET id = id WHERE id = $1", [1])]) == [1]
    await store.execute(f"ALTER TABLE {table} ADD COLUMN name text DEFAULT 'x'")
    assert await store.fetch(f"SELECT * FROM {table}") == [{"id": 1, "name": "x"}]
    await store.execute(f"ALTER TABLE {table} DROP COLUMN id")
    assert await store.fetch(f"SELECT * FROM {table}") == [{"name": "x"}]
    with pytest.raises(UndefinedColumn):
        await store.execute_batch([(f"UPDATE {table} SET id = id WHERE id = $1", [1])])


async def test_a_statement_that_failed_runs_once_it_can(store: Store, table: str) -> None:
    for _ in range(3):
        with pytest.raises(UndefinedTable):
            await store.fetch(f"SELECT * FROM {table}")
    await store.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    assert await store.fetch(f"SELECT * FROM {table}") == []
    insert = f"INSERT INTO {table} VALUES ($1)"
    await store.execute(insert, 1)
    with pytest.raises(UniqueViolation):  # its second and third runs, the third failing
        await store.execute_batch([(insert, [2]), (insert, [2])])
    for number in range(2, 8):
        assert await store.execute(insert, number) == 1
    assert await store.fetchval(f"SELECT sum(id) FROM {table}") == sum(range(1, 8))
    await store.execute(f"DROP TABLE {table}")
    with pytest.raises(UndefinedTable):
        await store.fetch(f"SELECT * FROM {table}")
    await store.execute(f"CREATE TABLE {table} (id int, note text)")
    assert await store.fetch(f"SELECT * FROM {table}") == []


async def test_deallocate_all_leaves_repeated_statements_working(store: Store) -> None:
    for number in range(6):
        assert await store.fetchval("SELECT $1::int + 1", number) == number + 1
    await store.execute("DEALLOCATE ALL")
    assert await store.fetchval("SELECT $1::int + 1", 41) == 42


async def test_migrations_created_the_session_tables(store: Store) -> None:
    assert await store.fetchval("SELECT max(version) FROM timestep_schema") >= 1
    await store.fetch(
        "SELECT session_id, COUNT(*) AS items, MAX(created_at) AS last_active "
        "FROM agent_messages GROUP BY session_id ORDER BY 2 DESC LIMIT 20"
    )


async def test_closed_store_refuses_work(tmp_path) -> None:
    async with await open_store("memory://") as store:
        assert await store.fetchval("SELECT 1") == 1
    assert store.closed
    with pytest.raises(StoreClosed, match="open_store"):
        await store.fetchval("SELECT 1")
    await store.aclose()  # twice is harmless


async def test_open_store_routing(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="postgresql://"):
        await open_store("mysql://nope")
    with pytest.raises(ConfigurationError, match="not both"):
        await open_store("memory://", pglite_path=tmp_path)
    monkeypatch.delenv("PG_CONNECTION_URI", raising=False)
    monkeypatch.setenv("TIMESTEP_PGLITE_DIR", str(tmp_path / "from-env"))
    async with await open_store() as store:
        assert store.backend == "pglite"
        assert store.location == str((tmp_path / "from-env").resolve())
    assert (tmp_path / "from-env" / "pgdata" / "PG_VERSION").is_file()


async def test_pg_connection_uri_selects_postgres(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from conftest import require_postgres

    monkeypatch.setenv("PG_CONNECTION_URI", require_postgres())
    async with await open_store() as store:
        assert store.backend == "postgres"
    async with await open_store(pglite_path=tmp_path / "explicit") as store:  # explicit path wins
        assert store.backend == "pglite"


async def test_unreachable_postgres_says_why() -> None:
    from timestep.errors import ConnectionFailed

    with pytest.raises(ConnectionFailed, match="PG_CONNECTION_URI") as caught:
        await open_store("postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=2")
    assert "secret" not in str(caught.value)


async def test_query_reports_columns_rows_and_counts(store: Store, table: str) -> None:
    await store.execute(f"CREATE TABLE {table} (id int, name text)")
    empty = await store.query(f"SELECT id, name FROM {table}")
    assert (empty.columns, empty.rows, empty.affected) == (["id", "name"], [], 0)
    inserted = await store.query(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b')")
    assert (inserted.columns, inserted.rows, inserted.affected) == ([], [], 2)
    returned = await store.query(f"UPDATE {table} SET name = upper(name) RETURNING id, name")
    assert sorted(returned.rows) == [(1, "A"), (2, "B")] and returned.affected == 2
    assert returned.dicts()[0].keys() == {"id", "name"}


async def test_statements_that_refuse_transaction_blocks_run(store: Store, table: str) -> None:
    """A single statement runs outside any explicit transaction, so VACUUM works (PGlite has
    no autovacuum: this is how its dead rows are reclaimed)."""
    await store.execute(f"CREATE TABLE {table} (v int)")
    await store.execute(f"INSERT INTO {table} SELECT generate_series(1, 100)")
    await store.execute(f"DELETE FROM {table}")
    assert await store.execute(f"VACUUM {table}") == 0


async def test_large_frames_in_flight_both_ways(store: Store) -> None:
    """Many multi-megabyte requests and replies at once: none waits on another's pipe space."""
    payload = "x" * 1_000_000

    async def round_trip(i: int) -> int:
        value = await store.fetchval("SELECT $1::text || repeat('y', 1000000) || $2::text", payload, str(i))
        assert value.endswith(str(i))
        return len(value)

    lengths = await asyncio.gather(*(round_trip(i) for i in range(24)))
    assert lengths == [2_000_000 + len(str(i)) for i in range(24)]


async def test_several_event_loops_at_once_leave_no_connection() -> None:
    """A PostgreSQL store used from several event loops at once; closed, no connection is left."""
    import uuid

    base = require_postgres()
    name = f"ts-{uuid.uuid4().hex[:10]}"
    separator = "&" if "?" in base else "?"
    store = await open_store(f"{base}{separator}application_name={name}")
    try:
        results = await asyncio.gather(*(asyncio.to_thread(asyncio.run, store.fetchval("SELECT 1")) for _ in range(3)))
        results += await asyncio.gather(*(store.fetchval("SELECT $1::int", i) for i in range(30)))
        assert results == [1, 1, 1, *range(30)]
    finally:
        await store.aclose()
    async with await open_store(base) as observer:
        left = await observer.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name)
    assert left == 0


async def test_a_listener_can_stop_listening_after_any_notification() -> None:
    """Leaving `listening` by a `return` mid-stream (the iterator suspended) closes it."""
    async with await open_store(require_postgres()) as store:
        channel = f"test_listening_{id(store)}"

        async def first_payload() -> str:
            async with store.listening(channel) as payloads:  # type: ignore[attr-defined]
                await store.execute("SELECT pg_notify($1, 'first'), pg_notify($1, 'second')", channel)
                async for payload in payloads:
                    return payload
            raise AssertionError("no notification")

        assert await asyncio.wait_for(first_payload(), 10) == "first"  # a deadlock is a timeout
