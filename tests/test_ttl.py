"""Session time to live: expired sessions read as empty, a write starts them afresh, and purging
removes exactly the expired ones (with their items, branches and usage).

Time is not waited for: a test ages a session by moving its `session_ttl.expires_at` into the
past, the one column expiry is decided by.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import child_env
from timestep import AdvancedSession, open_store
from timestep.session import Session
from timestep.store import Store

pytestmark = pytest.mark.anyio


def item(content: str, role: str = "user") -> dict[str, Any]:
    return {"role": role, "content": content}


async def expire(store: Store, session_id: str) -> None:
    """What the passing of the ttl does: expires_at is now in the past."""
    await store.execute("UPDATE session_ttl SET expires_at = now() - interval '1 second' WHERE session_id = $1", session_id)


async def test_a_write_sets_and_refreshes_the_expiry(store: Store) -> None:
    session = Session(f"ttl-{uuid.uuid4()}", store=store, ttl=dt.timedelta(hours=1))
    await session.add_items([item("a")])
    first = await store.fetchrow("SELECT ttl, expires_at - now() AS left FROM session_ttl WHERE session_id = $1", session.session_id)
    assert first["ttl"] == dt.timedelta(hours=1)
    assert dt.timedelta(minutes=59) < first["left"] <= dt.timedelta(hours=1)
    await store.execute("UPDATE session_ttl SET expires_at = now() + interval '1 minute' WHERE session_id = $1", session.session_id)
    await Session(session.session_id, store=store).add_items([item("b")])  # no ttl of its own: the session's
    left = await store.fetchval("SELECT expires_at - now() FROM session_ttl WHERE session_id = $1", session.session_id)
    assert left > dt.timedelta(minutes=59)


async def test_an_expired_session_reads_as_empty(store: Store) -> None:
    session = Session(f"ttl-{uuid.uuid4()}", store=store, ttl=60)
    await session.add_items([item("a"), item("b")])
    await expire(store, session.session_id)
    assert await session.get_items() == []
    assert await session.get_items(1) == []
    assert await session.pop_item() is None
    assert session.session_id not in [info.session_id for info in await Session.list_sessions(store)]
    await session.add_items([item("fresh")])  # a write to an expired session starts it afresh
    assert await session.get_items() == [item("fresh")]


async def test_purge_removes_exactly_the_expired_sessions(namespaced_store: tuple[str, str, Store]) -> None:
    store = namespaced_store[2]  # a purge takes every expired session it finds: ours only
    expired = AdvancedSession(f"ttl-{uuid.uuid4()}", store=store, ttl=60)
    await expired.add_items([item("one"), item("two", "assistant"), item("three")])
    await expired.create_branch_from_turn(2, "alt")
    alive = Session(f"ttl-{uuid.uuid4()}", store=store, ttl=3600)
    forever = Session(f"ttl-{uuid.uuid4()}", store=store)
    await alive.add_items([item("alive")])
    await forever.add_items([item("forever")])
    await expire(store, expired.session_id)
    assert await Session.purge_expired(store) == 1
    for table in ("agent_sessions", "agent_messages", "message_structure"):
        assert await store.fetchval(f"SELECT count(*) FROM {table} WHERE session_id = $1", expired.session_id) == 0
    assert await alive.get_items() == [item("alive")]
    assert await forever.get_items() == [item("forever")]
    assert await Session.purge_expired(store) == 0


async def test_sessions_purge_command(tmp_path: Path) -> None:
    async with await open_store(pglite_path=tmp_path) as store:  # the command shares this sidecar
        session = Session("will-expire", store=store, ttl=60)
        await session.add_items([item("a")])
        await Session("stays", store=store).add_items([item("b")])
        await expire(store, session.session_id)
        done = subprocess.run(
            [sys.executable, "-m", "timestep", "sessions", "purge", "--pglite-path", str(tmp_path)],
            capture_output=True, text=True, env=child_env(), timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "purged 1 expired session"
        assert [info.session_id for info in await Session.list_sessions(store)] == ["stays"]


@pytest.mark.parametrize("bad", [0, -5, dt.timedelta(0), "60", True])
def test_a_bad_ttl_is_refused(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="ttl must be"):
        Session("x", ttl=bad)
