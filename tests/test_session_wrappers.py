"""The SDK's session wrappers over ours, and sessions seen by more than one object: nothing is
lost. A wrong key's pop inside `EncryptedSession` deletes nothing, compaction replaces only the
history it read, and an `AdvancedSession` whose branch another object cleared is back on
"main" rather than reviving the branch. On both backends."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import psycopg
import pytest
from agents.extensions.memory import EncryptedSession
from cryptography.fernet import InvalidToken

from conftest import require_postgres
from timestep import open_store
from timestep.advanced_session import AdvancedSession
from timestep.session import Session
from timestep.store import Store

pytestmark = pytest.mark.anyio


def _items(*texts: str) -> list[Any]:
    return [{"role": "user", "content": text} for text in texts]


async def test_a_wrong_keys_pop_deletes_nothing(store: Store) -> None:
    backend = Session(f"wrap-{uuid.uuid4()}", store=store)
    right = EncryptedSession(backend.session_id, backend, "the right key")
    wrong = EncryptedSession(backend.session_id, backend, "a wrong key")
    await right.add_items(_items("first", "second"))
    stored = await backend.get_items()
    for _ in range(2):
        with pytest.raises(InvalidToken):
            await wrong.pop_item()
        assert await backend.get_items() == stored
    assert await right.pop_item() == _items("second")[0]
    assert await right.get_items() == _items("first")


async def test_a_validated_pop_takes_the_newest_item_even_if_one_arrives_meanwhile(store: Store) -> None:
    session = Session(f"wrap-{uuid.uuid4()}", store=store)
    await session.add_items(_items("old"))
    checked: list[Any] = []
    arrived = asyncio.Event()

    def check(item: Any) -> None:
        checked.append(item)

    async def writer() -> None:
        await session.add_items(_items("new"))
        arrived.set()

    async def pop_after_a_write() -> Any:
        # The first check runs while another writer appends: the pop must notice and take
        # the newest item, not the one it checked first.
        def check_then_let_the_writer_in(item: Any) -> None:
            check(item)
            if len(checked) == 1:
                asyncio.run_coroutine_threadsafe(writer(), loop).result()

        return await session._pop_item_with_validation(check_then_let_the_writer_in)

    loop = asyncio.get_running_loop()
    assert await pop_after_a_write() == _items("new")[0]
    assert arrived.is_set()
    assert checked == _items("old", "new")
    assert await session.get_items() == _items("old")


async def test_compaction_replaces_only_what_it_read(store: Store) -> None:
    session = Session(f"wrap-{uuid.uuid4()}", store=store, session_settings={"limit": 1})
    await session.add_items(_items("a", "b", "c"))
    snapshot = await session._get_compaction_snapshot(2)
    assert snapshot is not None
    assert (snapshot.items, snapshot.complete) == (_items("b", "c"), False)
    whole = await session._get_compaction_snapshot(5)
    assert whole is not None and (whole.items, whole.complete) == (_items("a", "b", "c"), True)
    await session.add_items(_items("d"))  # the session moved on: the older snapshot is stale
    assert await snapshot.replace_suffix(0, _items("summary")) is False
    assert await session.get_items(limit=10) == _items("a", "b", "c", "d")
    fresh = await session._get_compaction_snapshot(2)
    assert fresh is not None and await fresh.replace_suffix(0, _items("summary")) is True
    assert await session.get_items(limit=10) == _items("a", "b", "summary")
    assert await AdvancedSession(session.session_id, store=store)._get_compaction_snapshot(2) is None


async def test_two_compactions_of_one_snapshot_at_once_replace_it_once(store: Store) -> None:
    """Two compactions read the same history and replace it at the same moment (on PostgreSQL,
    on two connections): one replaces it, the other finds it changed and writes nothing."""
    session = Session(f"wrap-{uuid.uuid4()}", store=store)
    await session.add_items(_items("a", "b", "c"))
    first, second = await session._get_compaction_snapshot(3), await session._get_compaction_snapshot(3)
    assert first is not None and second is not None
    results = await asyncio.gather(first.replace_suffix(0, _items("one")), second.replace_suffix(0, _items("two")))
    assert sorted(results) == [False, True]
    assert await session.get_items() == _items("one" if results[0] else "two")


async def test_compaction_prunes_the_expired_prefix_with_the_suffix(store: Store) -> None:
    session = Session(f"wrap-{uuid.uuid4()}", store=store)
    await session.add_items(_items("expired 1", "expired 2", "kept", "x", "y"))
    original = await session._get_compaction_snapshot(2, prune_prefix=lambda item: item["content"].startswith("expired"))
    assert original is not None
    assert await original.replace_suffix(0, _items("summary")) is True
    assert await session.get_items() == _items("kept", "summary")


async def test_another_objects_clear_puts_a_branch_back_on_main(store: Store) -> None:
    session_id = f"wrap-{uuid.uuid4()}"
    stale = AdvancedSession(session_id, store=store)
    clearer = AdvancedSession(session_id, store=store)
    await stale.add_items(_items("u1", "u2"))
    await stale.create_branch_from_turn(2, "side")
    assert stale.current_branch_id == "side"
    await clearer.clear_session()
    await stale.add_items(_items("after the clear"))
    assert stale.current_branch_id == "main"
    assert await stale.get_items() == _items("after the clear")
    assert await stale.get_items(branch_id="side") == []
    assert [branch["branch_id"] for branch in await stale.list_branches()] == ["main"]
    # A branch taken after the clear is kept: the session it was taken in is the current one.
    await stale.create_branch_from_turn(1, "after")
    await stale.add_items(_items("on the new branch"))
    assert stale.current_branch_id == "after"
    assert await stale.get_items() == _items("on the new branch")


async def test_a_clear_between_the_check_and_the_write_does_not_revive_the_branch(store: Store) -> None:
    session_id = f"wrap-{uuid.uuid4()}"
    stale = AdvancedSession(session_id, store=store)
    await stale.add_items(_items("u1", "u2"))
    await stale.create_branch_from_turn(2, "side")
    await AdvancedSession(session_id, store=store).clear_session()

    async def still_on_side(_store: Store) -> str:  # the check ran before the clear
        return "side"

    stale._current_branch = still_on_side  # type: ignore[method-assign]
    await stale.add_items(_items("after the clear"))
    fresh = AdvancedSession(session_id, store=store)
    assert await fresh.get_items() == _items("after the clear")
    assert [branch["branch_id"] for branch in await fresh.list_branches()] == ["main"]


async def test_creating_a_branch_logs_as_the_sdk_does(store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from agents import _debug

    logger = logging.getLogger(f"timestep-test-{uuid.uuid4()}")
    session = AdvancedSession(f"wrap-{uuid.uuid4()}", store=store, logger=logger)
    await session.add_items(_items("a secret question", "more"))
    for redacted in (True, False):
        monkeypatch.setattr(_debug, "DONT_LOG_MODEL_DATA", redacted)
        with caplog.at_level(logging.DEBUG, logger=logger.name):
            caplog.clear()
            await session.create_branch_from_turn(1)
            await session.switch_to_branch("main")
        created = [record.getMessage() for record in caplog.records if "Created branch" in record.getMessage()]
        assert len(created) == 1
        assert ("a secret question" in created[0]) is not redacted


def test_a_postgres_pool_closes_with_its_event_loop() -> None:
    uri = require_postgres()
    tag = f"timestep-loops-{uuid.uuid4().hex[:8]}"
    uri_tagged = f"{uri}{'&' if '?' in uri else '?'}application_name={tag}"

    def connections_left() -> int:
        """The store's server connections still open. A closed connection's server process
        leaves pg_stat_activity a moment after the client's goodbye: look until it has."""
        with psycopg.connect(uri, autocommit=True) as conn:
            deadline = time.monotonic() + 10
            while True:
                row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [tag]).fetchone()
                assert row is not None
                if row[0] == 0 or time.monotonic() > deadline:
                    return int(row[0])

    store = asyncio.run(open_store(uri_tagged))
    session = Session(f"wrap-{uuid.uuid4()}", store=store)
    for n in range(5):
        asyncio.run(session.add_items(_items(f"loop {n}")))
        assert connections_left() == 0
    assert len(asyncio.run(session.get_items())) == 5
    asyncio.run(store.aclose())
