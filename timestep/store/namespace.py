"""Namespaces: each one a PostgreSQL schema holding its own copy of every timestep table.

`open_store(..., namespace="agent-a")` reads and writes schema `timestep_ns_agent-a` (its
sessions, runs, migrations), so agents or tenants are isolated from each other and from the
default (no namespace: the `public` schema) and can be dropped whole. The same on PostgreSQL
(each connection's search_path) and PGlite (each request carries its search_path setup).

Names are checked before they reach SQL: lowercase letters, digits, `_` and `-`, starting with
a letter or digit, at most 50 characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidNamespace, UndefinedTable
from .base import Store

PREFIX = "timestep_ns_"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,49}")


def check_name(name: str) -> str:
    """`name` if it is a valid namespace name, else InvalidNamespace saying what is allowed."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidNamespace(
            f"invalid namespace name {name!r}: use 1-50 lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def schema_of(name: str) -> str:
    """The schema a namespace lives in, quoted for SQL (the name is checked first)."""
    return f'"{PREFIX}{check_name(name)}"'


@dataclass(frozen=True)
class NamespaceInfo:
    """One namespace, as `list_namespaces` reports it."""

    name: str
    sessions: int
    runs: int


async def create_namespace(store: Store, name: str) -> None:
    """Create the namespace's schema if it is new (its tables come from the migrations)."""
    from .schema import LOCK_MIGRATIONS

    await store.execute_batch(
        [LOCK_MIGRATIONS, (f"CREATE SCHEMA IF NOT EXISTS {schema_of(name)}", [])]
    )


async def list_namespaces(store: Store) -> list[NamespaceInfo]:
    """Every namespace in the database the store is on, with its session and run counts."""
    names = await store.fetch(
        "SELECT substr(nspname, $1) AS name FROM pg_namespace WHERE starts_with(nspname, $2) ORDER BY nspname",
        len(PREFIX) + 1,
        PREFIX,
    )
    # A schema made by hand outside timestep, with a name timestep would refuse: not ours to
    # report; nor one another process is making or dropping meanwhile (it has no tables).
    infos = [await _info(store, row["name"]) for row in names if _NAME.fullmatch(row["name"])]
    return [info for info in infos if info is not None]


async def namespace_info(store: Store, name: str) -> NamespaceInfo | None:
    """One namespace with its session and run counts; None if there is none of that name (or
    it is being made or dropped right now)."""
    check_name(name)
    if not await store.fetchval("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", PREFIX + name):
        return None
    return await _info(store, name)


async def _info(store: Store, name: str) -> NamespaceInfo | None:
    """The namespace's counts; None if it has no tables (being made or dropped right now)."""
    schema = schema_of(name)
    try:
        counts = await store.fetchrow(
            f"SELECT (SELECT count(*) FROM {schema}.agent_sessions) AS sessions, "
            f"(SELECT count(DISTINCT run_id) FROM {schema}.run_states) AS runs"
        )
    except UndefinedTable:
        return None
    assert counts is not None
    return NamespaceInfo(name, counts["sessions"], counts["runs"])


async def drop_namespace(store: Store, name: str) -> bool:
    """Drop a namespace and everything in it; False if there was none of that name."""
    schema = schema_of(name)
    exists = await store.fetchval("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", PREFIX + name)
    if not exists:
        return False
    await store.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return True
