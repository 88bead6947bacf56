"""Shared fixtures: every store test runs on PGlite and, when PG_CONNECTION_URI is set, on PostgreSQL.

Tests run against the real sidecar and the real server. Under CI (CI=true) PostgreSQL is
required: a missing PG_CONNECTION_URI fails the run rather than skipping half of it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from timestep import open_store
from timestep.store import Store
from timestep.store.namespace import drop_namespace
from timestep.store.template import ensure_migrated_template

PG_URI = os.environ.get("PG_CONNECTION_URI", "")
BACKENDS = ["pglite", "postgres"]


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") and not PG_URI:
        raise pytest.UsageError("CI must test PostgreSQL too: set PG_CONNECTION_URI")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep tests away from the user's data dir; share one template cache across the run."""
    saved = {name: os.environ.get(name) for name in ("TIMESTEP_PGLITE_DIR", "TIMESTEP_CACHE_DIR")}
    os.environ["TIMESTEP_PGLITE_DIR"] = str(tmp_path_factory.mktemp("default-pglite"))
    cache = os.environ.get("TIMESTEP_TEST_CACHE_DIR") or str(tmp_path_factory.mktemp("cache"))
    os.environ["TIMESTEP_CACHE_DIR"] = cache
    # The migrated template, made (or copied from the checkout's shipped one) before any test:
    # a test's child process then never prints the first run's progress line.
    asyncio.run(ensure_migrated_template())
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def require_postgres() -> str:
    if not PG_URI:
        pytest.skip("PostgreSQL half: set PG_CONNECTION_URI to run it")
    return PG_URI


@pytest.fixture(scope="session", params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Store]:
    """One open store per backend, shared by the session; tests use their own tables."""
    if request.param == "postgres":
        opened = await open_store(require_postgres())
    else:
        opened = await open_store(pglite_path=tmp_path_factory.mktemp("pglite"))
    yield opened
    await opened.aclose()


@pytest.fixture(params=BACKENDS)
async def named_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, Store]]:
    """A new store on each backend (a new PGlite directory; the PostgreSQL server), and how a
    child process or the command line names it (a URI or a directory)."""
    name = require_postgres() if request.param == "postgres" else str(tmp_path / "db")
    store = await (open_store(name) if request.param == "postgres" else open_store(pglite_path=name))
    try:
        yield name, store
    finally:
        await store.aclose()


@pytest.fixture
async def namespaced_store(named_store: tuple[str, Store]) -> AsyncIterator[tuple[str, str, Store]]:
    """A store in a new namespace of its own, on each backend: for a test of what acts on every
    row it finds (a worker, a purge, a prune), which must not reach other tests' rows on the shared
    server. Yields how a child process names the database, the namespace, and the store."""
    name, shared = named_store
    namespace = f"own-{uuid.uuid4().hex[:12]}"
    where = {"uri": name} if name.startswith("postgresql") else {"pglite_path": name}
    store = await open_store(**where, namespace=namespace)
    try:
        yield name, namespace, store
    finally:
        await store.aclose()
        await drop_namespace(shared, namespace)


@pytest.fixture(params=["pglite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, dict[str, str]]]:
    """An open store on each backend, and the environment that points a Node child at the same
    database.

    On PGlite the store stays open while Node runs: Node reaches the database through this
    process's sidecar, never a second PGlite."""
    env = {key: value for key, value in os.environ.items() if key not in ("PG_CONNECTION_URI", "TIMESTEP_PGLITE_DIR")}
    if request.param == "postgres":
        uri = require_postgres()
        store = await open_store(uri)
        env["PG_CONNECTION_URI"] = uri
    else:
        store = await open_store(pglite_path=tmp_path / "db")
        env["TIMESTEP_PGLITE_DIR"] = str(tmp_path / "db")
    yield store, env
    await store.aclose()


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file crashy's tools record their executions in (in children and in this process)."""
    path = tmp_path / "ledger"
    monkeypatch.setenv("CRASHY_LEDGER", str(path))
    monkeypatch.delenv("CRASH_AT", raising=False)
    return path


@pytest.fixture
async def table(store: Store) -> AsyncIterator[str]:
    """A fresh table name, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    await store.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def pg_schema_uri() -> Iterator[str]:
    """A PostgreSQL URI whose search_path is a new, empty schema (a new database, in effect)."""
    import psycopg

    uri = require_postgres()
    schema = f"s_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in uri else "?"
    yield f"{uri}{separator}options=-csearch_path%3D{schema}"
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python process running timestep from this checkout."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


# The Agents SDK exports traces to OpenAI unless told not to: tests have no network.
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
