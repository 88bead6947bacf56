"""The migrated template: a data directory with timestep's tables, made once per machine.

A new PGlite directory is a copy of a template. Copied from the fresh initdb, it must then
run every migration (about half a second in PGlite); copied from this one, it opens with its
tables made. It is made the first time a new directory is opened: a copy of the fresh template
is opened in a sidecar of its own, migrated, closed cleanly, and renamed into place, so a
reader never sees half of one. Beside it, made the first time an in-memory database (memory://)
is opened, the same as a tar, which those are loaded from instead of from the fresh initdb's
gzipped tar and then migrated.

A wheel ships the migrated template it was built with (`write_shipped`, which hatch_build.py
runs; `make setup` writes one for a checkout), gzipped, for its PGlite version and migrations.
With it, a new directory is extracted from it while the cache has no migrated template, and
an in-memory database's tar is it unzipped: no initdb and no migrations run (seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import shutil
import tarfile
from pathlib import Path

from .datadir import DataDir, Template, cache_unwritable, extract_tarball
from .pglite import PGliteStore
from .schema import SCHEMA_KEY, migrate


async def ensure_new_directory_template() -> None:
    """What a new data directory is made from, made now if need be: nothing to do when a
    template is shipped (the directory is extracted from it), else the migrated template."""
    if Template().shipped() is None:
        await ensure_migrated_template()


async def ensure_migrated_template() -> Path:
    """The migrated template's data directory in the cache: the shipped one extracted, or made."""
    template = Template()
    target = template.migrated(SCHEMA_KEY)
    if template.has_migrated():
        return target
    shipped = template.shipped()
    if shipped is not None:
        await asyncio.to_thread(_extract_shipped, shipped, template, target)
        return target
    await asyncio.to_thread(template.ensure)
    await _migrate_template(template, target)
    return target


def _extract_shipped(shipped: Path, template: Template, target: Path) -> None:
    """Unpack the shipped template beside where it goes, then rename it into place."""
    staging = template.base / f"shipped.{os.getpid()}.tmp"
    try:
        template.base.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        extract_tarball(shipped, staging)
        with contextlib.suppress(OSError):  # another process may have put it there first
            os.replace(staging, target)
    except OSError as exc:
        raise cache_unwritable(template.base, exc) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


async def ensure_memory_template() -> Path:
    """The migrated template as a tar, for in-memory databases, made now if it is missing:
    the shipped one unzipped, else written from the migrated template."""
    template = Template()
    tarball = template.migrated_tarball(SCHEMA_KEY)
    if tarball.is_file():
        return tarball
    shipped = template.shipped()
    if shipped is not None:
        await asyncio.to_thread(_unzip_shipped, shipped, template, tarball)
    else:
        await asyncio.to_thread(_write_tarball, await ensure_migrated_template(), tarball)
    return tarball


def _unzip_shipped(shipped: Path, template: Template, tarball: Path) -> None:
    """The shipped template's tar, unzipped beside where it goes, then renamed into place."""
    staging = tarball.with_name(f"{tarball.name}.{os.getpid()}.tmp")
    try:
        template.base.mkdir(parents=True, exist_ok=True)
        with gzip.open(shipped) as source, open(staging, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
        os.replace(staging, tarball)
    except OSError as exc:
        raise cache_unwritable(template.base, exc) from exc
    finally:
        staging.unlink(missing_ok=True)


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


async def write_shipped(directory: Path) -> Path:
    """Make the migrated template (in the cache) and write it, gzipped, into `directory` as a
    wheel ships it; return the file."""
    pgdata = await ensure_migrated_template()
    directory.mkdir(parents=True, exist_ok=True)
    shipped = directory / Template().shipped_name
    await asyncio.to_thread(_archive, pgdata, shipped, gzipped=True)
    return shipped


def _archive(pgdata: Path, path: Path, *, gzipped: bool) -> None:
    """`pgdata` as a tar at `path`, its members' paths relative to it, as PGlite loads one."""
    with tarfile.open(path, "w:gz", compresslevel=6) if gzipped else tarfile.open(path, "w") as archive:
        for member in sorted(pgdata.rglob("*")):
            archive.add(member, arcname=member.relative_to(pgdata).as_posix(), recursive=False)


def _write_tarball(pgdata: Path, tarball: Path) -> None:
    """`pgdata` as an uncompressed tar, as PGlite loads a data directory (paths relative to
    it); written aside and renamed into place. Uncompressed: PGlite would gunzip its 42 MB
    (most of them a WAL segment's zeros) on every load."""
    staging = tarball.with_name(f"{tarball.name}.{os.getpid()}.tmp")
    try:
        _archive(pgdata, staging, gzipped=False)
        os.replace(staging, tarball)
    finally:
        staging.unlink(missing_ok=True)
