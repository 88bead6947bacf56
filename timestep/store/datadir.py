"""The on-disk layout of an embedded database, its lock, and the template new ones start from.

A PGlite directory `root` holds:
    root/pgdata    the PostgreSQL data directory PGlite opens
    root/lock      flock()ed by the sidecar for as long as it runs: one PGlite per directory
    root/sidecar.sock  the running sidecar's unix socket, for other processes (mode 0600)

New data directories are copied from a template made once per PGlite version (an initdb
costs seconds and ~1 GB of memory; a copy costs a fraction of a second). Once timestep's
migrations have been applied to a copy of it (`timestep.store.template`), new directories are
copied from that one, and open with their tables already made.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import platformdirs

from ..errors import DataDirIncompatible, SidecarStartFailed
from . import protocol
from .node import find_node, pglite_version, sidecar_dir
from .schema import SCHEMA_KEY

SOCKET_PATH_LIMIT = 100  # sun_path is 104-108 bytes depending on the platform


def default_pglite_dir() -> Path:
    """TIMESTEP_PGLITE_DIR, else the platform's user data directory (e.g. ~/.local/share/timestep/pglite)."""
    configured = os.environ.get("TIMESTEP_PGLITE_DIR")
    if configured:
        return Path(configured).expanduser()
    return platformdirs.user_data_path("timestep") / "pglite"


def cache_dir() -> Path:
    """TIMESTEP_CACHE_DIR, else the platform's user cache directory (e.g. ~/.cache/timestep)."""
    configured = os.environ.get("TIMESTEP_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return platformdirs.user_cache_path("timestep")


class DataDir:
    """Paths of one embedded database directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.pgdata = self.root / "pgdata"
        self.lock = self.root / "lock"

    @property
    def socket(self) -> str:
        path = str(self.root / "sidecar.sock")
        if len(path.encode()) < SOCKET_PATH_LIMIT:
            return path
        # Too long for a unix socket: a short, per-user, per-directory path instead.
        short = Path(tempfile.gettempdir()) / f"timestep-{os.getuid()}"
        short.mkdir(mode=0o700, exist_ok=True)
        digest = hashlib.sha256(path.encode()).hexdigest()[:24]
        return str(short / f"{digest}.sock")

    def try_lock(self) -> int | None:
        """An fd holding an exclusive flock on the directory, or None if another process holds it."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def write_holder(self, fd: int, text: str) -> None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)

    def holder(self) -> str:
        """Who holds the lock, as the holder wrote it (best effort)."""
        try:
            return self.lock.read_text().strip() or "an unknown process"
        except OSError:
            return "an unknown process"

    def prepare(self, template: Template) -> None:
        """Create pgdata from the template if it is new; refuse one from another PostgreSQL major."""
        version_file = self.pgdata / "PG_VERSION"
        if version_file.is_file():
            found = version_file.read_text().strip()
            if found != template.pg_version:
                raise DataDirIncompatible(
                    f"{self.pgdata} holds a PostgreSQL {found} database, but the bundled PGlite "
                    f"{template.pglite} runs PostgreSQL {template.pg_version}; open it with the "
                    "PGlite that made it, or choose another directory"
                )
            return
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            raise SidecarStartFailed(
                f"{self.pgdata} exists but is not a PostgreSQL data directory (no PG_VERSION); "
                "move it away or choose another directory"
            )
        staging = self.root / f"pgdata.{os.getpid()}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            shutil.copytree(template.source(), staging, copy_function=shutil.copy)  # modes matter to PostgreSQL; times do not
            if self.pgdata.exists():
                self.pgdata.rmdir()
            os.replace(staging, self.pgdata)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


class Template:
    """A fresh PGlite data directory for one PGlite version, made once and cached."""

    def __init__(self) -> None:
        self.pglite = pglite_version()
        self.base = cache_dir() / f"pglite-{self.pglite}"
        self.tarball = self.base / "template.tgz"
        self.pgdata = self.base / "pgdata"

    @property
    def pg_version(self) -> str:
        return (self.pgdata / "PG_VERSION").read_text().strip()

    def migrated(self, schema_key: str) -> Path:
        """Where the copy with timestep's tables (of migrations `schema_key`) is kept."""
        return self.base / f"pgdata-schema-{schema_key}"

    def migrated_tarball(self, schema_key: str) -> Path:
        """The same copy as a tar, which an in-memory database is loaded from."""
        return self.base / f"pgdata-schema-{schema_key}.tar"

    def source(self) -> Path:
        """The data directory a new one is copied from: one with the current tables if it was
        made, else the fresh initdb."""
        migrated = self.migrated(SCHEMA_KEY)
        return migrated if (migrated / "PG_VERSION").is_file() else self.pgdata

    def memory_source(self) -> Path:
        """The tarball a new in-memory database is loaded from, likewise: the one with the
        current tables if it was made, else the fresh initdb's."""
        migrated = self.migrated_tarball(SCHEMA_KEY)
        return migrated if migrated.is_file() else self.tarball

    def ensure(self) -> Template:
        """Make the template if it is not cached yet (the one time initdb runs)."""
        if (self.pgdata / "PG_VERSION").is_file() and self.tarball.is_file():
            return self
        self.base.mkdir(parents=True, exist_ok=True)
        if not self.tarball.is_file():
            self._make_tarball()
        if not (self.pgdata / "PG_VERSION").is_file():
            self._extract()
        return self

    def _make_tarball(self) -> None:
        script = sidecar_dir() / "server.mjs"
        done = subprocess.run(
            [find_node(), str(script), "--make-template", str(self.tarball)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        if done.returncode != 0 or not self.tarball.is_file():
            raise SidecarStartFailed(f"cannot create the PGlite template: {_failure_text(done)}")

    def _extract(self) -> None:
        staging = Path(tempfile.mkdtemp(prefix="pgdata.", dir=self.base))
        try:
            with tarfile.open(self.tarball) as archive:
                members = []
                for member in archive.getmembers():
                    member.name = member.name.lstrip("/")
                    if member.name and ".." not in Path(member.name).parts:
                        members.append(member)
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(staging, members=members, filter="data")
                else:  # Python without extraction filters; names were checked above.
                    archive.extractall(staging, members=members)
            with contextlib.suppress(OSError):  # another process may have won the race
                os.replace(staging, self.pgdata)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _failure_text(done: subprocess.CompletedProcess[bytes]) -> str:
    """The sidecar's error frame if it wrote one, else its stderr and exit code."""
    reader = protocol.FrameReader()
    with contextlib.suppress(Exception):
        for body in reader.feed(done.stdout):
            reply = protocol.decode_reply(body)
            if isinstance(reply, protocol.Error):
                return reply.message
    stderr = done.stderr.decode(errors="replace").strip()
    return f"exit code {done.returncode}" + (f": {stderr[-2000:]}" if stderr else "")
