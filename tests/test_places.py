"""Bad places get a clear, typed error and nothing written; another local user gets nothing.

Tests that need a second local user create one (useradd) when run as root, and are skipped
with that reason otherwise. That user's actions run in a helper that imports as root, then
drops to the user's ids (this checkout may sit where that user cannot read).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import child_env
from timestep import open_store
from timestep.errors import (
    DatabaseError,
    DataDirUnusable,
    SidecarCrashed,
    SidecarError,
    SidecarStartFailed,
    SocketUnsafe,
)
from timestep.store.datadir import DataDir

pytestmark = pytest.mark.anyio

OTHER_USER = "timestep-test-other"


def other_user() -> pwd.struct_passwd:
    """A second local user, created if missing (root only)."""
    if os.getuid() != 0:
        pytest.skip("a second local user is created with useradd, which needs root")
    # One test process at a time (pytest-xdist): a second useradd would fail on the first's lock.
    with open(Path(tempfile.gettempdir()) / "timestep-test-useradd.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return pwd.getpwnam(OTHER_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER_USER], check=True)
            return pwd.getpwnam(OTHER_USER)


def as_other_user(code: str, *args: str, wait: bool = True) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    """Run `code` as the other user: it imports what it needs as root, then calls
    `become_other()`, which drops to that user's ids."""
    user = other_user()
    prelude = (
        "import os, sys, socket, json\n"
        f"def become_other():\n    os.setgroups([])\n    os.setgid({user.pw_gid})\n    os.setuid({user.pw_uid})\n"
    )
    command = [sys.executable, "-c", prelude + textwrap.dedent(code), *args]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    return subprocess.run(command, capture_output=True, text=True, env=child_env(), timeout=120)


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A directory every user can walk into (pytest's own are its user's alone), as a shared
    /srv or /tmp would be."""
    path = Path(tempfile.mkdtemp(prefix="timestep-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A new directory of this user's with a short path, however deep pytest's own tmp_path is:
    a socket's path fits in it."""
    path = Path(tempfile.mkdtemp(prefix="ts-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def names(path: Path) -> set[str]:
    return {p.name for p in path.iterdir()}


async def test_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(DataDirUnusable, match="is a file"):
        await open_store(pglite_path=blocker)
    with pytest.raises(DataDirUnusable, match="a part of the path is a file"):
        await open_store(pglite_path=blocker / "below")
    assert blocker.read_text() == "not a directory"


async def test_a_postgresql_data_directory_is_refused(tmp_path: Path) -> None:
    server = tmp_path / "main"
    (server / "global").mkdir(parents=True)
    (server / "PG_VERSION").write_text("15\n")
    (server / "global" / "pg_control").write_bytes(b"\0" * 64)
    before = names(server)
    with pytest.raises(DataDirUnusable, match="PostgreSQL data directory itself"):
        await open_store(pglite_path=server)
    assert names(server) == before  # no lock, no pgdata/


async def test_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(DataDirUnusable, match=r"writable by group or others .*chmod go-w"):
        await open_store(pglite_path=shared)
    assert names(shared) == set()


async def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    user = other_user()
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, user.pw_uid, user.pw_gid)
    with pytest.raises(DataDirUnusable, match=f"owned by uid {user.pw_uid}"):
        await open_store(pglite_path=theirs)
    assert names(theirs) == set()


def test_a_read_only_directory_is_refused(open_tmp: Path) -> None:
    """Run as the other user, for whom permissions apply (root may write anywhere)."""
    user = other_user()
    locked = open_tmp / "read-only"
    locked.mkdir(mode=0o500)
    os.chown(locked, user.pw_uid, user.pw_gid)
    done = as_other_user(
        """
        import asyncio
        from timestep import open_store
        from timestep.errors import DataDirUnusable
        become_other()
        try:
            asyncio.run(open_store(pglite_path=sys.argv[1]))
        except DataDirUnusable as exc:
            print(exc)
        """,
        str(locked),
    )
    assert done.returncode == 0, done.stderr
    assert "not writable" in done.stdout
    assert names(locked) == set()


@contextlib.contextmanager
def small_disk(path: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of that size at `path` (root only), to fill."""
    if os.getuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


async def test_a_full_disk_is_a_typed_error_and_leaves_nothing(tmp_path: Path) -> None:
    with small_disk(tmp_path / "small", 8) as disk:  # a new database takes ~40 MB
        with pytest.raises(DataDirUnusable, match="no space is left on the device"):
            await open_store(pglite_path=disk / "db")
        assert names(disk / "db") <= {"lock"}  # no half-copied pgdata, no staging copy


async def test_a_disk_that_fills_up_fails_writes_and_loses_nothing_acknowledged(tmp_path: Path) -> None:
    with small_disk(tmp_path / "small", 48) as disk:  # the database, and ~9 MB to spare
        store = await open_store(pglite_path=disk / "db")
        await store.execute("CREATE TABLE filler (n int PRIMARY KEY, payload text)")
        acknowledged, failures = [], []
        for n in range(600):  # 100 KB each that does not compress: 60 MB in all
            try:
                await store.execute("INSERT INTO filler VALUES ($1, $2)", n, os.urandom(50_000).hex())
                acknowledged.append(n)
            except (DatabaseError, SidecarError) as exc:
                failures.append(exc)
                if len(failures) == 3:
                    break
        await store.aclose()
        assert failures, "the disk never filled"
        assert all(isinstance(f, (DatabaseError, SidecarCrashed, SidecarStartFailed)) for f in failures), failures
        assert any("No space left on device" in str(f) or getattr(f, "sqlstate", "") == "53100" for f in failures), failures
        subprocess.run(["mount", "-o", "remount,size=256m", str(disk)], check=True)  # space again
        async with await open_store(pglite_path=disk / "db") as reopened:
            stored = {row["n"] for row in await reopened.fetch("SELECT n FROM filler")}
        assert set(acknowledged) <= stored


async def test_a_staging_copy_left_by_a_killed_open_is_removed(tmp_path: Path) -> None:
    stale = tmp_path / "db" / "pgdata.999999.tmp"
    stale.mkdir(parents=True)
    (stale / "PG_VERSION").write_text("18\n")
    (tmp_path / "db").chmod(0o700)
    async with await open_store(pglite_path=tmp_path / "db") as store:
        assert await store.fetchval("SELECT 1") == 1
    assert not stale.exists()


async def test_a_socket_directory_others_can_write_is_refused(
    tmp_path: Path, short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a data directory path too long for a socket address, the socket goes to
    <tmp>/timestep-<uid>: never one that another user made or can write to."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(short_tmp))  # as TMPDIR would, in a new process
    planted = short_tmp / f"timestep-{os.getuid()}"
    planted.mkdir(parents=True)
    planted.chmod(0o777)
    with pytest.raises(SocketUnsafe, match=r"writable by .* another user could replace"):
        await open_store(pglite_path=deep)
    assert names(planted) == set()


async def test_a_socket_directory_of_another_user_is_refused(
    tmp_path: Path, short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = other_user()
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(short_tmp))  # as TMPDIR would, in a new process
    planted = short_tmp / f"timestep-{os.getuid()}"
    planted.mkdir(mode=0o700)
    os.chown(planted, user.pw_uid, user.pw_gid)
    with pytest.raises(SocketUnsafe, match=f"owned by uid {user.pw_uid}"):
        await open_store(pglite_path=deep)


async def test_the_socket_goes_to_the_runtime_directory(tmp_path: Path, short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = short_tmp / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    async with await open_store(pglite_path=deep) as store:
        assert await store.fetchval("SELECT 1") == 1
        published = DataDir(deep).published_socket()
        assert published is not None and Path(published).parent == runtime / "timestep"
        assert stat.S_IMODE(os.stat(runtime / "timestep").st_mode) == 0o700
        assert stat.S_IMODE(os.stat(published).st_mode) == 0o600


async def test_a_runtime_directory_too_deep_for_a_socket_is_passed_over(
    tmp_path: Path, short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket's path has a limit (sun_path): with XDG_RUNTIME_DIR too deep for it, the socket
    goes to <tmp>/timestep-<uid>; with that too deep as well, a SocketUnsafe says what to set."""
    runtime = tmp_path / ("r" * 80)
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setattr(tempfile, "tempdir", str(short_tmp))
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    async with await open_store(pglite_path=deep) as store:
        assert await store.fetchval("SELECT 1") == 1
        published = DataDir(deep).published_socket()
        assert published is not None and Path(published).parent == short_tmp / f"timestep-{os.getuid()}"
    assert names(runtime) == set()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / ("t" * 80)))
    with pytest.raises(SocketUnsafe, match="no place for the sidecar's socket.*set TMPDIR to a short directory"):
        await open_store(pglite_path=deep)
    monkeypatch.setattr(tempfile, "tempdir", str(short_tmp))  # as the message says: the directory opens
    async with await open_store(pglite_path=deep) as store:
        assert await store.fetchval("SELECT 1") == 1


async def test_another_user_cannot_reach_the_database(open_tmp: Path) -> None:
    other_user()
    tmp_path = open_tmp  # the other user may walk up to the directory, as in a shared /srv
    async with await open_store(pglite_path=tmp_path / "db") as store:
        await store.execute("CREATE TABLE secret (v text)")
        await store.execute("INSERT INTO secret VALUES ('mine')")
        published = DataDir(tmp_path / "db").published_socket()
        done = as_other_user(
            """
            import asyncio
            from timestep import open_store
            from timestep.errors import DataDirUnusable
            become_other()
            path, sock_path = sys.argv[1], sys.argv[2]
            outcomes = {}
            for what, action in [
                ("connect", lambda: socket.socket(socket.AF_UNIX).connect(sock_path)),
                ("list", lambda: os.listdir(path)),
                ("read", lambda: open(os.path.join(path, "pgdata", "PG_VERSION")).read()),
                ("lock", lambda: open(os.path.join(path, "lock")).read()),
            ]:
                try:
                    action()
                    outcomes[what] = "allowed"
                except OSError as exc:
                    outcomes[what] = type(exc).__name__
            try:
                asyncio.run(open_store(pglite_path=path))
                outcomes["open"] = "allowed"
            except DataDirUnusable as exc:
                outcomes["open"] = "DataDirUnusable" if "owned by" in str(exc) else str(exc)
            print(json.dumps(outcomes))
            """,
            str(tmp_path / "db"), str(published),
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {
            "connect": "PermissionError", "list": "PermissionError", "read": "PermissionError",
            "lock": "PermissionError", "open": "DataDirUnusable",
        }
        assert await store.fetchval("SELECT v FROM secret") == "mine"


async def test_an_impostor_on_the_socket_is_refused_before_anything_is_sent(tmp_path: Path, open_tmp: Path) -> None:
    """Another user's process listening where the sidecar should be (here made to pass every
    file check: only the kernel's word on who listens catches it) gets nothing."""
    user = other_user()
    data_dir = DataDir(tmp_path / "db")
    data_dir.check()
    private = open_tmp / "sockets"
    private.mkdir(mode=0o777)
    private.chmod(0o777)
    path = private / "impostor.sock"
    impostor = as_other_user(
        """
        become_other()
        server = socket.socket(socket.AF_UNIX)
        server.bind(sys.argv[1])
        server.listen()
        print("listening", flush=True)
        conn, _ = server.accept()
        conn.settimeout(10)
        try:
            received = conn.recv(1 << 16)
        except OSError:
            received = b""
        print(json.dumps({"received": len(received)}), flush=True)
        """,
        str(path), wait=False,
    )
    assert isinstance(impostor, subprocess.Popen)
    try:
        assert impostor.stdout is not None and impostor.stdout.readline().strip() == "listening"
        private.chmod(0o700)  # as if it were ours ...
        os.chown(path, os.getuid(), os.getgid())  # ... and the socket too
        lock_fd = data_dir.try_lock()  # held here, as a running sidecar's owner would
        assert lock_fd is not None
        data_dir.write_holder(lock_fd, "a process", str(path))
        try:
            with pytest.raises(SocketUnsafe, match=f"runs as uid {user.pw_uid}"):
                await open_store(pglite_path=data_dir.root)
        finally:
            os.close(lock_fd)
        assert impostor.stdout.readline().strip() == '{"received": 0}'  # not even a request
    finally:
        impostor.kill()
        impostor.wait()



def test_javascript_refuses_a_socket_that_is_not_the_users_alone(tmp_path: Path) -> None:
    """js/sidecar-client.mjs finds the socket in the lock file, and checks it as Python does."""
    from timestep.store.node import find_node

    data_dir = DataDir(tmp_path / "db")
    data_dir.check()
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    fd = data_dir.try_lock()
    assert fd is not None
    try:
        data_dir.write_holder(fd, "a process", str(shared / "sidecar.sock"))
        client = Path(__file__).resolve().parent.parent / "js" / "sidecar-client.mjs"
        script = f"import {{ SidecarClient }} from {json.dumps(str(client))};\n" + textwrap.dedent(
            """
            try {
              await SidecarClient.connect(process.argv[1]);
              console.log('connected');
            } catch (err) {
              console.log(err.message);
            }
            """
        )
        done = subprocess.run([find_node(), "--input-type=module", "-e", script, str(data_dir.root)], capture_output=True, text=True, timeout=60)
    finally:
        os.close(fd)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refusing to connect to the timestep sidecar"), done.stdout
    assert "is not yours alone" in done.stdout
