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
from .template import ensure_memory_template, ensure_migrated_template

__all__ = ["QueryResult", "Statement", "Store", "default_store", "open_store"]

MEMORY_URI = "memory://"


async def open_store(
    uri: str | None = None,
    *,
    pglite_path: str | os.PathLike[str] | None = None,
    namespace: str | None = None,
) -> Store:
    """Open a store and bring its tables up to date.

    - `uri` (else PG_CONNECTION_URI) `postgresql://...`: that PostgreSQL server;
    - `memory://`: a new in-memory PGlite, gone when closed;
    - otherwise PGlite in `pglite_path`, else TIMESTEP_PGLITE_DIR, else the user data dir.
    An explicit `pglite_path` wins over PG_CONNECTION_URI.

    `namespace` (else TIMESTEP_NAMESPACE) keeps this store's sessions, runs and tables apart
    from every other namespace's and from the default's, in a schema of its own.
    """
    if namespace is None:
        namespace = os.environ.get("TIMESTEP_NAMESPACE") or None
    if namespace is not None:
        check_name(namespace)
    if uri is None and pglite_path is None:
        uri = os.environ.get("PG_CONNECTION_URI") or None
    if uri is not None and pglite_path is not None:
        raise ConfigurationError("give either uri or pglite_path, not both")
    store: Store
    if uri is None:
        path = pglite_path or default_pglite_dir()
        if not (DataDir(path).pgdata / "PG_VERSION").is_file():  # a new database: copied with its tables
            await ensure_migrated_template()
        store = PGliteStore.for_directory(path, namespace)
    elif uri == MEMORY_URI:
        await ensure_memory_template()  # loaded with its tables
        store = PGliteStore.in_memory(namespace)
    elif uri.startswith(("postgresql://", "postgres://")):
        store = PostgresStore(uri, namespace)
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
