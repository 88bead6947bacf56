"""Namespaces: a schema per namespace on both backends; isolated, listed, dropped whole."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from conftest import child_env, require_postgres
from timestep import AdvancedSession, open_store
from timestep.errors import InvalidNamespace
from timestep.session import Session
from timestep.store import Store
from timestep.store.namespace import drop_namespace, list_namespaces

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["pglite", "postgres"])
async def location(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """open_store() arguments for a database, and the CLI options that reach it."""
    if request.param == "postgres":
        uri = require_postgres()
        yield {"open": {"uri": uri}, "cli": ["--uri", uri]}
    else:
        yield {"open": {"pglite_path": tmp_path / "db"}, "cli": ["--pglite-path", str(tmp_path / "db")]}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_namespaces_do_not_see_each_other(location: dict[str, Any]) -> None:
    first, second = unique("agent-a"), unique("agent-b")
    stores = [await open_store(**location["open"], namespace=name) for name in (first, second)]
    default = await open_store(**location["open"])
    try:
        session_id = unique("shared-id")
        for store, text in zip(stores, ("from a", "from b")):
            await Session(session_id, store=store).add_items([{"role": "user", "content": text}])
        advanced = AdvancedSession(session_id, store=stores[0])
        await advanced.add_items([{"role": "user", "content": "again"}])
        assert await Session(session_id, store=stores[0]).get_items() == [{"role": "user", "content": "from a"}, {"role": "user", "content": "again"}]
        assert await Session(session_id, store=stores[1]).get_items() == [{"role": "user", "content": "from b"}]
        assert await Session(session_id, store=default).get_items() == []
        assert await stores[1].fetchval("SELECT count(*) FROM message_structure") == 0
        schemas = {row["table_schema"] for row in await default.fetch(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'run_states'"
        )}
        assert {f"timestep_ns_{first}", f"timestep_ns_{second}"} <= schemas
    finally:
        for store in (*stores, default):
            await store.aclose()
        async with await open_store(**location["open"]) as cleanup:
            for name in (first, second):
                await drop_namespace(cleanup, name)


async def test_interleaved_requests_keep_their_namespace(location: dict[str, Any]) -> None:
    """Stores of several namespaces on one sidecar (PGlite) or server, all writing at once."""
    names = [unique("tenant") for _ in range(3)]
    stores = [await open_store(**location["open"], namespace=name) for name in names]
    try:
        async def write(store: Store, name: str) -> None:
            for number in range(20):
                await Session("log", store=store).add_items([{"role": "user", "content": f"{name} {number}"}])

        await asyncio.gather(*(write(store, name) for store, name in zip(stores, names)))
        for store, name in zip(stores, names):
            items = await Session("log", store=store).get_items()
            assert [item["content"] for item in items] == [f"{name} {number}" for number in range(20)]
    finally:
        for store in stores:
            await store.aclose()
        async with await open_store(**location["open"]) as cleanup:
            for name in names:
                await drop_namespace(cleanup, name)


async def test_list_and_drop(location: dict[str, Any]) -> None:
    name = unique("droppable")
    async with await open_store(**location["open"], namespace=name) as store:
        await Session("one", store=store).add_items([{"role": "user", "content": "x"}])
    async with await open_store(**location["open"]) as default:
        listed = {info.name: info for info in await list_namespaces(default)}
        assert listed[name].sessions == 1 and listed[name].runs == 0
        assert await drop_namespace(default, name) is True
        assert await drop_namespace(default, name) is False
        assert name not in {info.name for info in await list_namespaces(default)}
    async with await open_store(**location["open"], namespace=name) as again:  # back, empty
        assert await Session("one", store=again).get_items() == []
        await drop_namespace(again, name)


async def test_a_namespace_being_made_is_not_listed(location: dict[str, Any]) -> None:
    """A namespace's schema exists a moment before its tables (and after them, as it is dropped):
    listing the namespaces meanwhile passes over it instead of failing."""
    name = unique("half-made")
    async with await open_store(**location["open"]) as default:
        await default.execute(f'CREATE SCHEMA "timestep_ns_{name}"')
        try:
            listed = await list_namespaces(default)
            assert name not in {info.name for info in listed}
        finally:
            await default.execute(f'DROP SCHEMA "timestep_ns_{name}"')


@pytest.mark.parametrize("bad", ["Agent", "a b", 'x"; DROP TABLE agent_sessions; --', "", "-x", "é", "a" * 51, "a.b"])
async def test_bad_names_are_refused_before_any_sql(bad: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidNamespace, match="invalid namespace name"):
        await open_store(pglite_path=tmp_path / "never", namespace=bad)
    assert not (tmp_path / "never").exists()


def timestep(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "timestep", *args], input=stdin, capture_output=True, text=True, env=child_env(), timeout=300
    )


async def test_namespaces_commands(location: dict[str, Any]) -> None:
    name = unique("cli")
    async with await open_store(**location["open"], namespace=name) as store:  # PGlite: the CLI shares this sidecar
        await Session("kept", store=store).add_items([{"role": "user", "content": "x"}])
        listed = timestep("namespaces", "list", *location["cli"])
        assert listed.returncode == 0, listed.stderr
        assert any([cell.strip() for cell in line.split(" | ")][:3] == [name, "1", "0"] for line in listed.stdout.splitlines())
        sessions = timestep("sessions", "list", *location["cli"], "--namespace", name)
        assert "kept" in sessions.stdout
        refused = timestep("namespaces", "drop", name, *location["cli"], stdin="something else\n")
        assert refused.returncode == 1
        assert f"not confirmed: namespace {name!r} was not dropped" in refused.stderr
        assert await Session("kept", store=store).get_items() == [{"role": "user", "content": "x"}]
        dropped = timestep("namespaces", "drop", name, *location["cli"], stdin=f"{name}\n")
        assert dropped.returncode == 0, dropped.stderr
        assert dropped.stdout.strip().endswith(f"dropped namespace {name}")
        missing = timestep("namespaces", "drop", name, "--yes", *location["cli"])
        assert missing.returncode == 1 and "no namespace" in missing.stderr
        bad = timestep("namespaces", "drop", "Bad Name", "--yes", *location["cli"])
        assert bad.returncode == 1 and "invalid namespace name" in bad.stderr
