"""A pytest plugin that runs the Agents SDK's own session tests against timestep's sessions.

Loaded into a pytest run inside the SDK's source distribution (tests/test_sdk_suite.py starts
it): each test module's `SQLiteSession` and `AdvancedSQLiteSession` become subclasses of
`Session` and `AdvancedSession` that take the same arguments. A `db_path` is a database: each one a
test names (and each `:memory:`) gets a namespace of its own on the backend under test
(TIMESTEP_SDK_SUITE_BACKEND: "pglite" or "postgres", at TIMESTEP_SDK_SUITE_TARGET). Every
assertion of the SDK's tests is kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import uuid
from typing import Any

import pytest

from timestep import open_store
from timestep.advanced_session import AdvancedSession
from timestep.session import Session
from timestep.store import Store
from timestep.store.namespace import drop_namespace

BACKEND = os.environ.get("TIMESTEP_SDK_SUITE_BACKEND", "pglite")
TARGET = os.environ.get("TIMESTEP_SDK_SUITE_TARGET", "")

_current_test = ""
_stores: dict[str, Store] = {}


def _in_a_thread(coroutine: Any) -> Any:
    """Run `coroutine` to its end on a loop of its own: the SDK's constructors are synchronous,
    and may be called while a test's loop runs."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = asyncio.run(coroutine)
        except BaseException as error:  # handed to the caller
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def _store_for(db_path: Any) -> Store:
    """The store standing for SQLite database `db_path` in the current test."""
    key = f"{_current_test}\0{db_path}" if str(db_path) != ":memory:" else uuid.uuid4().hex
    namespace = "sdk_" + hashlib.sha1(key.encode()).hexdigest()[:16]
    if namespace not in _stores:
        if BACKEND == "postgres":
            _stores[namespace] = _in_a_thread(open_store(TARGET, namespace=namespace))
        else:
            _stores[namespace] = _in_a_thread(open_store(pglite_path=TARGET, namespace=namespace))
    return _stores[namespace]


class SQLiteSessionOnTimestep(Session):
    """`SQLiteSession(...)`, as a timestep `Session`: a class, so that the SDK's tests can
    subclass it and check instances against it."""

    def __init__(
        self, session_id: str, db_path: Any = ":memory:", create_tables: bool = False, *, logger: Any = None,
        session_settings: Any = None,
    ) -> None:
        super().__init__(session_id, store=_store_for(db_path), session_settings=session_settings)


class AdvancedSQLiteSessionOnTimestep(AdvancedSession):
    """`AdvancedSQLiteSession(...)`, as a timestep `AdvancedSession`."""

    def __init__(
        self, *, session_id: str, db_path: Any = ":memory:", create_tables: bool = False, logger: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(session_id, store=_store_for(db_path), create_tables=create_tables, logger=logger, **kwargs)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        if module is None:
            continue
        if hasattr(module, "SQLiteSession"):
            module.SQLiteSession = SQLiteSessionOnTimestep
        if hasattr(module, "AdvancedSQLiteSession"):
            module.AdvancedSQLiteSession = AdvancedSQLiteSessionOnTimestep


def pytest_runtest_setup(item: pytest.Item) -> None:
    global _current_test
    _current_test = item.nodeid


def pytest_sessionfinish(session: pytest.Session) -> None:
    if BACKEND != "postgres" or not _stores:
        return

    async def drop() -> None:
        async with await open_store(TARGET) as store:
            for namespace in _stores:
                await drop_namespace(store, namespace)

    _in_a_thread(drop())
