"""Items and ids at the edges: what SQLiteSession round-trips, a Session round-trips; what no
store can hold is refused with a typed error before anything is written, alike on both backends."""

from __future__ import annotations

import uuid

import pytest

from conftest import require_postgres
from timestep import open_store
from timestep.errors import ConnectionFailed, InvalidParameter, InvalidSessionId, InvalidSessionItem
from timestep.session import MAX_SESSION_ID_BYTES, Session
from timestep.store import Store

pytestmark = pytest.mark.anyio


async def test_a_lone_surrogate_round_trips(store: Store) -> None:
    session = Session(f"edge-{uuid.uuid4()}", store=store)
    items = [{"role": "user", "content": "before"}, {"role": "user", "content": "half a pair: \ud800, and \udfff"}]
    await session.add_items(items)  # type: ignore[arg-type]
    assert await session.get_items() == items
    assert await session.get_items(limit=1) == items[1:]
    assert await session.pop_item() == items[1]
    assert await session.get_items() == items[:1]


async def test_an_item_nested_too_deeply_is_refused_and_nothing_is_written(store: Store) -> None:
    session = Session(f"edge-{uuid.uuid4()}", store=store)
    await session.add_items([{"role": "user", "content": "kept"}])
    deep: dict[str, object] = {"role": "user", "content": "x"}
    for _ in range(5000):
        deep = {"nested": deep}
    with pytest.raises(InvalidSessionItem, match="nested too deeply"):
        await session.add_items([{"role": "user", "content": "lost?"}, deep])  # type: ignore[list-item]
    assert await session.get_items() == [{"role": "user", "content": "kept"}]


async def test_an_oversized_session_id_is_refused_before_any_sql(store: Store) -> None:
    longest = "é" * (MAX_SESSION_ID_BYTES // 2)  # two bytes each: exactly the limit
    session = Session(longest, store=store)
    await session.add_items([{"role": "user", "content": "fits"}])
    assert await session.get_items() == [{"role": "user", "content": "fits"}]
    await session.clear_session()
    for too_long in ("x" * (MAX_SESSION_ID_BYTES + 1), "x" * 1_000_000):
        with pytest.raises(InvalidSessionId, match=f"at most {MAX_SESSION_ID_BYTES} bytes"):
            Session(too_long, store=store)


async def test_too_many_parameters_are_refused_alike(store: Store) -> None:
    placeholders = ", ".join(f"${n}" for n in range(1, 70_001))
    with pytest.raises(InvalidParameter, match="at most 65,535 parameters"):
        await store.fetch(f"SELECT {placeholders}", *range(70_000))
    with pytest.raises(InvalidParameter, match="at most 65,535 parameters"):
        await store.execute_batch([(f"SELECT {placeholders}", list(range(70_000)))])
    assert await store.fetchval("SELECT 1") == 1


async def test_close_is_there_and_harmless(store: Store) -> None:
    session = Session(f"edge-{uuid.uuid4()}", store=store)
    await session.add_items([{"role": "user", "content": "hi"}])
    session.close()
    session.close()
    assert await session.get_items() == [{"role": "user", "content": "hi"}]  # the store is shared: still open
    assert await store.fetchval("SELECT 1") == 1


async def test_a_terminated_backend_is_a_connection_failure_and_the_pool_recovers() -> None:
    async with await open_store(require_postgres()) as store:
        pid = await store.fetchval("SELECT pg_backend_pid()")
        async with await open_store(require_postgres()) as other:
            assert await other.fetchval("SELECT pg_terminate_backend($1)", pid) is True
        with pytest.raises(ConnectionFailed, match="57P01"):
            for _ in range(10):  # the pool may hand out another connection first
                await store.fetchval("SELECT pg_backend_pid()")
        assert await store.fetchval("SELECT 1") == 1
