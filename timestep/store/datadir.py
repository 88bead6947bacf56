"""The on-disk layout of an embedded database, its lock, and the template new ones start from.

A PGlite directory `root` holds:
    root/pgdata    the PostgreSQL data directory PGlite opens
    root/lock      flock()ed by the sidecar for as long as it runs: one PGlite per directory;
                   it says who holds it, and where the sidecar's socket is
    root/sidecar.sock  the running sidecar's unix socket, for other processes (mode 0600;
                   elsewhere when the path is too long: see private.py)

`root` must be this user's alone (not writable by group or others): a place that cannot hold
a database is refused with `DataDirUnusable`, saying why, before anything is written.

New data directories are copied from a template made once per PGlite version (an initdb
costs seconds and ~1 GB of memory; a copy costs a fraction of a second). Once timestep's
migrations have been applied to a copy of it (`timestep.store.template`), new directories are
copied from that one, and open with their tables already made.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import platformdirs

from ..errors import DataDirIncompatible, DataDirUnusable, SidecarStartFailed
from . import protocol
from .node import find_node, pglite_version, sidecar_dir
from .private import describe_owner, socket_path_for
from .schema import SCHEMA_KEY

_SOCKET_LINE = "socket "


def os_reason(exc: OSError) -> str:
    """An OSError as the few words a user can act on."""
    return {
        errno.ENOSPC: "no space is left on the device",
        errno.EDQUOT: "the disk quota is used up",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOTDIR: "a part of the path is a file",
    }.get(exc.errno or 0, exc.strerror or str(exc))


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

    def check(self) -> None:
        """Make `root` if it is new; DataDirUnusable, naming the reason and the fix, if it cannot
        be ours: a file, unwritable, full, another user's or writable by others, or a
        PostgreSQL data directory itself. Nothing is written to a refused place."""
        try:
            info = os.lstat(self.root)
        except FileNotFoundError:
            try:
                self.root.mkdir(mode=0o700, parents=True)
            except OSError as exc:
                raise self._unusable(f"it cannot be created: {os_reason(exc)}") from exc
            return
        except OSError as exc:
            raise self._unusable(os_reason(exc)) from exc
        if not stat.S_ISDIR(info.st_mode):
            raise self._unusable("it is a file, not a directory", "give a directory (a new path is made for you)")
        if info.st_uid != os.getuid():
            raise self._unusable(f"it is owned by {describe_owner(info)}, not by you (uid {os.getuid()})")
        if info.st_mode & 0o022:
            raise self._unusable(
                f"it is writable by group or others (mode {stat.S_IMODE(info.st_mode):o}), who could "
                "read or replace the database and its socket",
                f"run `chmod go-w {self.root}`",
            )
        if (self.root / "PG_VERSION").exists() or (self.root / "global" / "pg_control").exists():
            raise self._unusable(
                "it is a PostgreSQL data directory itself; timestep keeps its database in pgdata/ "
                "inside the directory you give",
                "give a new or empty directory (or, for that server, PG_CONNECTION_URI)",
            )
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise self._unusable("it is not writable (read-only, or permission denied)")

    def _unusable(self, reason: str, fix: str = "choose another directory") -> DataDirUnusable:
        return DataDirUnusable(f"cannot keep an embedded database in {self.root}: {reason}; {fix}")

    def try_lock(self) -> int | None:
        """An fd holding an exclusive flock on the directory, or None if another process holds it."""
        self.check()
        try:
            fd = os.open(self.lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise self._unusable(f"its lock file cannot be opened: {os_reason(exc)}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def choose_socket(self) -> str:
        """Where a sidecar started now will listen (see private.py)."""
        return socket_path_for(self.root)

    def write_holder(self, fd: int, text: str, socket: str) -> None:
        """Say in the lock file who holds it, and where its sidecar listens (joiners read it)."""
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{text}\n{_SOCKET_LINE}{socket}\n".encode(), 0)

    def _lock_lines(self) -> list[str]:
        try:
            return self.lock.read_text().splitlines()
        except OSError:
            return []

    def holder(self) -> str:
        """Who holds the lock, as the holder wrote it (best effort)."""
        lines = [line for line in self._lock_lines() if not line.startswith(_SOCKET_LINE)]
        return " ".join(lines).strip() or "an unknown process"

    def published_socket(self) -> str | None:
        """The socket the lock's holder said its sidecar listens on (None: not said yet)."""
        for line in self._lock_lines():
            if line.startswith(_SOCKET_LINE):
                return line[len(_SOCKET_LINE) :]
        return None

    def prepare(self, template: Template) -> None:
        """Create pgdata from the template if it is new; refuse one from another PostgreSQL major.
        Called holding the lock: a staging copy left by a process killed mid-copy is removed."""
        for stale in self.root.glob("pgdata.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
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
        if self.pgdata.exists() and (not self.pgdata.is_dir() or any(self.pgdata.iterdir())):
            raise self._unusable(
                f"{self.pgdata} exists but is not a PostgreSQL data directory (no PG_VERSION)",
                "move it away or choose another directory",
            )
        staging = self.root / f"pgdata.{os.getpid()}.tmp"
        try:
            shipped = template.shipped_only()
            if shipped is not None:
                extract_tarball(shipped, staging)  # the first on this machine: one write, not two
            else:
                shutil.copytree(template.source(), staging, copy_function=_copy_or_stop)
            if self.pgdata.exists():
                self.pgdata.rmdir()
            os.replace(staging, self.pgdata)
        except _CopyStopped as stopped:
            raise self._unusable(f"the new database cannot be written: {os_reason(stopped.cause)}") from stopped.cause
        except shutil.Error as exc:  # copytree's list of what it could not copy (metadata)
            raise self._unusable(f"the new database cannot be written: {exc.args[0][0][2]}") from exc
        except OSError as exc:
            raise self._unusable(f"the new database cannot be written: {os_reason(exc)}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)


class _CopyStopped(Exception):
    """A file could not be copied: stop the whole copy (copytree would go on, then list them)."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _copy_or_stop(source: str, target: str) -> None:
    try:
        shutil.copy(source, target)  # modes matter to PostgreSQL; times do not
    except OSError as exc:
        raise _CopyStopped(exc) from exc


def extract_tarball(tarball: Path, target: Path) -> None:
    """Unpack a data directory's tar (gzipped or not) into `target`, a new directory."""
    with tarfile.open(tarball) as archive:
        archive.extractall(target, filter="data")


def cache_unwritable(base: Path, exc: OSError) -> SidecarStartFailed:
    """The error for a template that cannot be written to the cache directory `base`."""
    return SidecarStartFailed(
        f"cannot keep the embedded database's template in {base}: {os_reason(exc)}; "
        "set TIMESTEP_CACHE_DIR to a writable directory"
    )


# Where a wheel keeps the migrated template it ships (hatch_build.py; `make setup` for a checkout).
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "_template"


class Template:
    """A fresh PGlite data directory for one PGlite version, made once and cached; and the
    migrated one new databases are copied from, cached or shipped (timestep.store.template)."""

    def __init__(self) -> None:
        self.pglite = pglite_version()
        self.base = cache_dir() / f"pglite-{self.pglite}"
        self.tarball = self.base / "template.tgz"
        self.pgdata = self.base / "pgdata"

    @property
    def pg_version(self) -> str:
        """The PostgreSQL major version this PGlite runs (its template's)."""
        shipped = self.shipped_only()
        if shipped is not None:
            with tarfile.open(shipped) as archive:
                member = archive.extractfile("PG_VERSION")
                assert member is not None
                return member.read().decode().strip()
        return (self.source() / "PG_VERSION").read_text().strip()

    @property
    def shipped_name(self) -> str:
        """The file name of the migrated template shipped for this PGlite and these migrations."""
        return f"pgdata-pglite-{self.pglite}-schema-{SCHEMA_KEY}.tar.gz"

    def shipped(self) -> Path | None:
        """The migrated template shipped for this PGlite version and these migrations, if any."""
        path = SHIPPED_DIR / self.shipped_name
        return path if path.is_file() else None

    def shipped_only(self) -> Path | None:
        """The shipped template while the cache has no migrated one: new directories are then
        extracted from it."""
        return None if self.has_migrated() else self.shipped()

    def has_migrated(self) -> bool:
        """Whether the migrated template is in the cache."""
        return (self.migrated(SCHEMA_KEY) / "PG_VERSION").is_file()

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
        """Make the template if it is not cached yet (the one time initdb runs), unless the
        migrated one, which new databases are copied from, is there already."""
        if self.has_migrated() or self.shipped() is not None:
            return self
        if (self.pgdata / "PG_VERSION").is_file() and self.tarball.is_file():
            return self
        print("timestep: preparing the embedded database (first run only)", file=sys.stderr, flush=True)
        try:
            self.base.mkdir(parents=True, exist_ok=True)
            if not self.tarball.is_file():
                self._make_tarball()
            if not (self.pgdata / "PG_VERSION").is_file():
                self._extract()
        except OSError as exc:
            raise cache_unwritable(self.base, exc) from exc
        return self

    def _make_tarball(self) -> None:
        script = sidecar_dir() / "server.mjs"
        done = subprocess.run(
            [find_node(), str(script), "--make-template", str(self.tarball), "--owner-pid", str(os.getpid())],
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
