"""The storage engine: one async `Store` API over PostgreSQL or embedded PGlite."""

from __future__ import annotations

import os

from ..errors import ConfigurationError
from .base import QueryResult, Statement, Store
from .datadir import DataDir, default_pglite_dir
from .namespace import check_name, create_namespace
from .pglite import PGliteStore
from .postgres import PostgresStore
from .schema import migrate
from .template import ensure_memory_template, ensure_new_directory_template

__all__ = ["QueryResult", "Statement", "Store", "default_store", "open_store"]

MEMORY_URI = "memory://"


DURABILITY_MODES = ("durable", "relaxed")


def durability_mode(durability: str | None) -> str:
    """`durability`, else TIMESTEP_DURABILITY, else "durable"; a ConfigurationError if unknown."""
    mode = durability if durability is not None else os.environ.get("TIMESTEP_DURABILITY") or "durable"
    if mode not in DURABILITY_MODES:
        source = "durability" if durability is not None else "TIMESTEP_DURABILITY"
        raise ConfigurationError(f"{source}={mode!r}: use 'durable' (the default) or 'relaxed'")
    return mode


async def open_store(
    uri: str | None = None,
    *,
    pglite_path: str | os.PathLike[str] | None = None,
    namespace: str | None = None,
    durability: str | None = None,
) -> Store:
    """Open a store and bring its tables up to date.

    - `uri` (else PG_CONNECTION_URI) `postgresql://...`: that PostgreSQL server;
    - `memory://`: a new in-memory PGlite, gone when closed;
    - otherwise PGlite in `pglite_path`, else TIMESTEP_PGLITE_DIR, else the user data dir.
    An explicit `pglite_path` wins over PG_CONNECTION_URI.

    `namespace` (else TIMESTEP_NAMESPACE) keeps this store's sessions, runs and tables apart
    from every other namespace's and from the default's, in a schema of its own.

    `durability` (else TIMESTEP_DURABILITY): "durable" (the default) acknowledges a write once
    it would survive an OS crash or power loss (PGlite: its WAL is fsynced first; PostgreSQL:
    the server's own synchronous commit). "relaxed" acknowledges it once it is in the database:
    a killed process loses nothing, an OS crash may lose the last writes (PostgreSQL:
    synchronous_commit off). For tests and throwaway data. memory:// keeps nothing either way.
    """
    if namespace is None:
        namespace = os.environ.get("TIMESTEP_NAMESPACE") or None
    if namespace is not None:
        check_name(namespace)
    mode = durability_mode(durability)
    if uri is None and pglite_path is None:
        uri = os.environ.get("PG_CONNECTION_URI") or None
    if uri is not None and pglite_path is not None:
        raise ConfigurationError("give either uri or pglite_path, not both")
    store: Store
    if uri is None:
        path = pglite_path or default_pglite_dir()
        data_dir = DataDir(path)
        data_dir.check()
        if not (data_dir.pgdata / "PG_VERSION").is_file():  # a new database: copied with its tables
            await ensure_new_directory_template()
        store = PGliteStore.for_directory(path, namespace, mode)
    elif uri == MEMORY_URI:
        await ensure_memory_template()  # loaded with its tables
        store = PGliteStore.in_memory(namespace)
    elif uri.startswith(("postgresql://", "postgres://")):
        store = PostgresStore(uri, namespace, mode)
    else:
        raise ConfigurationError(
            f"cannot open {uri!r}: use a postgresql:// URI, {MEMORY_URI!r}, or no URI for the "
            "embedded PGlite"
        )
    try:
        if namespace is not None:
            await create_namespace(store, namespace)
        await migrate(store)
    except BaseException:
        await store.aclose()
        raise
    return store


from .default import default_store  # noqa: E402  (it needs open_store, defined above)
