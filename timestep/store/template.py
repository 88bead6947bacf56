"""The migrated template: a data directory with timestep's tables, made once per machine.

A new PGlite directory is a copy of a template. Copied from the fresh initdb, it must then
run every migration (about half a second in PGlite); copied from this one, it opens with its
tables made. It is made the first time a new directory is opened: a copy of the fresh template
is opened in a sidecar of its own, migrated, closed cleanly, and renamed into place, so a
reader never sees half of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path

from .datadir import DataDir, Template
from .pglite import PGliteStore
from .schema import SCHEMA_KEY, migrate


async def ensure_migrated_template() -> Path:
    """The migrated template's data directory, made now if it is missing."""
    template = await asyncio.to_thread(Template().ensure)
    target = template.migrated(SCHEMA_KEY)
    if (target / "PG_VERSION").is_file():
        return target
    staging = DataDir(template.base / f"migrating.{os.getpid()}.tmp")
    shutil.rmtree(staging.root, ignore_errors=True)
    try:
        store = PGliteStore.for_directory(staging.root)  # copied from the fresh template
        try:
            await migrate(store)
        finally:
            await store.aclose()  # the sidecar shuts PostgreSQL down cleanly
        with contextlib.suppress(OSError):  # another process may have made it first
            os.replace(staging.pgdata, target)
    finally:
        shutil.rmtree(staging.root, ignore_errors=True)
    return target
