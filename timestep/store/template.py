"""The migrated template: a data directory with timestep's tables, made once per machine.

A new PGlite directory is a copy of a template. Copied from the fresh initdb, it must then
run every migration (about half a second in PGlite); copied from this one, it opens with its
tables made. It is made the first time a new directory is opened: a copy of the fresh template
is opened in a sidecar of its own, migrated, closed cleanly, and renamed into place, so a
reader never sees half of one. Beside it, made the first time an in-memory database (memory://)
is opened, the same as a tar, which those are loaded from instead of from the fresh initdb's
gzipped tar and then migrated.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tarfile
from pathlib import Path

from .datadir import DataDir, Template
from .pglite import PGliteStore
from .schema import SCHEMA_KEY, migrate


async def ensure_migrated_template() -> Path:
    """The migrated template's data directory, made now if it is missing."""
    template = await asyncio.to_thread(Template().ensure)
    target = template.migrated(SCHEMA_KEY)
    if not (target / "PG_VERSION").is_file():
        await _migrate_template(template, target)
    return target


async def ensure_memory_template() -> Path:
    """The migrated template as a tar, for in-memory databases, made now if it is missing."""
    pgdata = await ensure_migrated_template()
    tarball = Template().migrated_tarball(SCHEMA_KEY)
    if not tarball.is_file():
        await asyncio.to_thread(_write_tarball, pgdata, tarball)
    return tarball


async def _migrate_template(template: Template, target: Path) -> None:
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


def _write_tarball(pgdata: Path, tarball: Path) -> None:
    """`pgdata` as an uncompressed tar, as PGlite loads a data directory (paths relative to
    it); written aside and renamed into place. Uncompressed: PGlite would gunzip its 42 MB
    (most of them a WAL segment's zeros) on every load."""
    staging = tarball.with_name(f"{tarball.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(staging, "w") as archive:
            for path in sorted(pgdata.rglob("*")):
                archive.add(path, arcname=path.relative_to(pgdata).as_posix(), recursive=False)
        os.replace(staging, tarball)
    finally:
        staging.unlink(missing_ok=True)
