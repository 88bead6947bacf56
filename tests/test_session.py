"""`Session`: the SDK session protocol on both backends, conformant with the SDK's SQLiteSession."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest
from agents.memory import SessionABC, SessionSettings, SQLiteSession

from timestep.errors import InvalidParameter, InvalidSessionItem
from timestep.session import Session
from timestep.store import Store

pytestmark = pytest.mark.anyio


def item(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "content": content}


async def conformance_scenario(make: Any) -> list[Any]:
    """Every observable result of one workout, in order: the same list for every implementation."""
    seen: list[Any] = []
    alpha, beta, limited = make("alpha"), make("beta"), make("gamma", SessionSettings(limit=2))
    seen += [await alpha.get_items(), await alpha.pop_item()]
    await alpha.add_items([item("user", "héllo wörld 日本語"), item("assistant", "😀 emoji 👍🏽"), {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{\"a\": 1.5}"}])
    for limit in (None, 0, 1, 2, 3, 100, -1):
        seen.append((limit, await alpha.get_items(limit)))
    seen.append(await alpha.pop_item())
    seen.append(await alpha.get_items())
    big = item("user", "x" * 1_000_000)
    await alpha.add_items([big])
    seen.append((await alpha.get_items(1))[0] == big)
    many = [item("user", f"message {i}") for i in range(5000)]
    await beta.add_items(many)
    seen.append(await beta.get_items() == many)
    seen.append(await beta.get_items(3))
    seen.append(len(await alpha.get_items()))  # side by side: beta's items are not alpha's
    await limited.add_items([item("user", str(i)) for i in range(5)])
    seen.append(await limited.get_items())  # the settings' limit
    seen.append(await limited.get_items(4))  # an explicit limit wins
    await alpha.clear_session()
    seen += [await alpha.get_items(), await alpha.pop_item(), len(await beta.get_items())]
    for _ in range(3):
        seen.append(await beta.pop_item())
    seen.append(len(await beta.get_items()))
    return seen


async def test_conformance_with_sqlite_session(store: Store, tmp_path: Path) -> None:
    database = tmp_path / "sdk.sqlite"
    expected = await conformance_scenario(lambda sid, settings=None: SQLiteSession(sid, database, session_settings=settings))
    prefix = f"conf-{random.getrandbits(40)}-"
    ours = await conformance_scenario(lambda sid, settings=None: Session(prefix + sid, store=store, session_settings=settings))
    assert ours == expected


def test_implements_the_sdk_protocol() -> None:
    from agents.memory.session import Session as SessionProtocol

    session = Session()
    assert isinstance(session, SessionABC)
    assert isinstance(session, SessionProtocol)
    assert len(session.session_id) == 36 and Session().session_id != session.session_id
    assert session.session_settings == SessionSettings()


async def test_add_items_is_one_round_trip(store: Store) -> None:
    """However many items: one request to the store."""
    calls: list[str] = []
    session = Session(store=store)
    for name in ("query", "execute_batch", "execute_script"):
        original = getattr(store, name)

        def counting(*args: Any, _original: Any = original, _name: str = name) -> Any:
            calls.append(_name)
            return _original(*args)

        setattr(store, name, counting)
    try:
        await session.add_items([item("user", str(i)) for i in range(250)])
    finally:
        for name in ("query", "execute_batch", "execute_script"):
            delattr(store, name)
    assert calls == ["query"]
    assert len(await session.get_items()) == 250


async def test_items_are_stored_as_the_sessions_json_text(store: Store) -> None:
    """`message_data` is `json`: each item's text as written, key order included, as the
    SDK's SQLiteSession stores it; the docs' `->>` operator reads it."""
    session = Session(store=store)
    items = [{"type": "message", "role": "user", "content": "ünïcødé 😀"}, {"role": "assistant", "content": "a", "id": "z"}]
    await session.add_items(items)
    rows = await store.fetch(
        "SELECT message_data::text AS raw, message_data->>'role' AS role FROM agent_messages WHERE session_id = $1 ORDER BY id",
        session.session_id,
    )
    assert [row["raw"] for row in rows] == [json.dumps(item) for item in items]
    assert [row["role"] for row in rows] == ["user", "assistant"]
    got = await session.get_items()
    assert got == items and [list(item) for item in got] == [list(item) for item in items]


async def test_unknown_session_reads_as_empty(store: Store) -> None:
    session = Session("never-written-" + str(random.getrandbits(40)), store=store)
    assert await session.get_items() == []
    assert await session.pop_item() is None
    await session.clear_session()


@pytest.mark.parametrize("session_id", ["it's \"quoted\"; DROP TABLE agent_messages; --", "ünïcødé 😀 会话", "x" * 1000, ""])
async def test_awkward_ids_are_stored_safely(store: Store, session_id: str) -> None:
    session = Session(session_id, store=store)
    await session.clear_session()
    await session.add_items([item("user", "kept")])
    assert await Session(session_id, store=store).get_items() == [item("user", "kept")]
    assert session_id in {info.session_id for info in await Session.list_sessions(store)}
    await session.clear_session()


async def test_nul_in_an_id_is_refused(store: Store) -> None:
    with pytest.raises(InvalidParameter, match="NUL"):
        await Session("a\x00b", store=store).add_items([item("user", "x")])


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [({"content": object()}, "item 1"), ({"score": float("nan")}, "NaN"), ({"content": "a\x00b"}, "NUL")],
)
async def test_unstorable_items_are_refused_before_writing(store: Store, bad: dict[str, Any], fragment: str) -> None:
    session = Session(store=store)
    await session.add_items([item("user", "before")])
    with pytest.raises(InvalidSessionItem, match=fragment):
        await session.add_items([item("user", "fine"), bad])
    assert await session.get_items() == [item("user", "before")]
    assert isinstance(InvalidSessionItem("x"), TypeError)


async def test_concurrent_writers_to_one_session(store: Store) -> None:
    """100 tasks add 3 items each: nothing lost, each call's items contiguous and in order."""
    session = Session(store=store)
    await asyncio.gather(*(session.add_items([{"task": t, "k": k} for k in range(3)]) for t in range(100)))
    items = await session.get_items()
    assert len(items) == 300
    for start in range(0, 300, 3):
        run = items[start : start + 3]
        assert [i["task"] for i in run] == [run[0]["task"]] * 3
        assert [i["k"] for i in run] == [0, 1, 2]
    assert sorted({i["task"] for i in items}) == list(range(100))


async def test_hundred_sessions_written_at_once(store: Store) -> None:
    sessions = [Session(store=store) for _ in range(100)]
    await asyncio.gather(*(s.add_items([{"n": n} for n in range(5)]) for s in sessions))
    for s in sessions:
        assert await s.get_items() == [{"n": n} for n in range(5)]


async def test_concurrent_pops_take_distinct_items(store: Store) -> None:
    session = Session(store=store)
    await session.add_items([{"n": n} for n in range(20)])
    popped = await asyncio.gather(*(session.pop_item() for _ in range(20)))
    assert sorted(p["n"] for p in popped if p is not None) == list(range(20))
    assert await session.get_items() == []


async def test_list_and_delete_sessions(store: Store) -> None:
    first, second = Session(store=store), Session(store=store)
    await first.add_items([item("user", "1")])
    await second.add_items([item("user", "1"), item("user", "2")])
    listed = {info.session_id: info for info in await Session.list_sessions(store)}
    assert listed[first.session_id].items == 1 and listed[second.session_id].items == 2
    assert listed[second.session_id].last_active >= listed[second.session_id].created_at
    assert await Session.delete_session(first.session_id, store) is True
    assert await Session.delete_session(first.session_id, store) is False
    assert first.session_id not in {info.session_id for info in await Session.list_sessions(store)}
    assert await second.get_items() == [item("user", "1"), item("user", "2")]


async def test_the_docs_query_runs_unchanged(store: Store) -> None:
    session = Session(store=store)
    await session.add_items([item("user", "a"), item("user", "b")])
    rows = await store.fetch(
        "SELECT session_id, COUNT(*) AS items, MAX(created_at) AS last_active FROM agent_messages GROUP BY session_id ORDER BY 2 DESC LIMIT 20;"
    )
    assert rows and set(rows[0]) == {"session_id", "items", "last_active"}


async def test_default_store_is_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    from timestep.store import default_store

    a, b = Session(), Session()
    await a.add_items([item("user", "default")])
    assert await a.store() is await b.store() is await default_store()
    assert await Session(a.session_id).get_items() == [item("user", "default")]
    await a.clear_session()
