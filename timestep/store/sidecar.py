"""The PGlite sidecar's lifecycle: start on first use, share, detect death, restart.

A `Sidecar` stands for one database (a data directory, or one in-memory instance). It holds
at most one live `Link` to a sidecar process: its own child (talking over the child's
stdin/stdout) or, when another process already runs the sidecar for that directory, that
process's sidecar (over its unix socket). Frames are written under a lock from whatever
thread calls; replies are read by the event loops waiting for them, and each is resolved
on the loop that made the request, so one sidecar serves any number of event loops, in
turn or at once.

When a link dies, every request in flight fails with `SidecarCrashed`, and the next request
starts (or finds) a new sidecar. The process's own sidecars are stopped at interpreter exit;
a sidecar also exits by itself when its stdin closes, so a killed parent leaves no orphan.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import os
import select
import socket
import subprocess
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from ..errors import (
    DataDirLocked,
    InvalidParameter,
    SidecarCrashed,
    SidecarError,
    SidecarStartFailed,
    StoreUnusableAfterFork,
)
from . import protocol
from .datadir import DataDir, Template
from .node import find_node, sidecar_dir
from .private import check_peer, check_socket

START_TIMEOUT = 120.0  # a sidecar that neither answers nor exits by then is wedged
SHARE_TIMEOUT = 30.0  # how long to wait for another process's sidecar to come up or go away
STOP_TIMEOUT = 10.0
STDERR_LINES = 40


def _usable_cores() -> int:
    """The cores this process may run on (all of them where the OS cannot say, as on macOS)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# How long a request polls for its reply before its event loop sleeps (see Link._poll_briefly):
# a short query's whole round trip, with room for a slower machine (the sidecar's own handling
# of a `SELECT 1` took 0.02 ms on one machine here and 0.16 ms on another, where a 150 us poll
# missed every time). Only with a second core, for the sidecar to run on meanwhile.
POLL_S = 300e-6 if _usable_cores() >= 2 else 0.0
# After a poll that missed (a longer query), this many requests sleep at once before one polls again.
POLL_BACKOFF = 4


class Link:
    """One open connection to a running sidecar.

    Replies are read on the event loops that wait for them: while a loop has requests in
    flight it watches the link's output (`loop.add_reader`), and whichever loop reads a reply
    resolves it on the loop that asked (at once on its own, `call_soon_threadsafe` on another).
    So one link serves any number of event loops, in turn or at once, and a reply wakes only
    the thread that waits for it: a reader thread instead costs a second wake-up per request
    (the thread, then the loop), ~0.1 ms of each `SELECT 1` on a 2-core VM.

    With nothing in flight nobody reads: a sidecar that died meanwhile is found by the next
    write, which fails before anything was sent (`LinkGone`), so the caller can start anew.

    A loop's only request polls for its reply for up to `POLL_S` before the loop sleeps:
    waking a sleeping process costs ~40 µs on a VM, a third of a short query's round trip.
    """

    def __init__(
        self,
        *,
        describe: str,
        read_fd: int,
        read: Callable[[], bytes],
        close_read: Callable[[], None],
        write: Callable[[bytes], None],
        reader: protocol.FrameReader,
        ready: protocol.Ready,
        process: subprocess.Popen[bytes] | None = None,
        sock: socket.socket | None = None,
        stderr: collections.deque[str] | None = None,
    ) -> None:
        self.describe = describe
        self.ready = ready
        self.process = process
        self._sock = sock
        self._read_fd = read_fd
        self._read = read  # without blocking: BlockingIOError when nothing is there
        self._close_read = close_read
        self._write = write
        self._reader = reader
        self._stderr = stderr if stderr is not None else collections.deque()
        self._lock = threading.Lock()  # the pending map, the watchers and the failure; held briefly
        self._write_lock = threading.Lock()  # whole frames, one at a time
        self._read_lock = threading.Lock()  # one reader of the output at a time
        self._pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
        self._watchers: dict[asyncio.AbstractEventLoop, int] = {}  # loop -> its requests in flight
        self._next_id = 1
        self._failure: SidecarError | None = None
        self._ended = False  # the output reached its end
        self._let_go = False  # the sidecar said it let us go (a final `closed` frame)
        self._output_closed = False
        self._sleep_next = 0  # requests left to wait without polling (after a poll missed)

    @property
    def alive(self) -> bool:
        return self._failure is None

    async def request(self, build: Callable[[int], protocol.Request]) -> protocol.Reply:
        """Send one request and wait for its reply; any number may be in flight."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[protocol.Reply] = loop.create_future()
        with self._lock:
            request_id = self._next_id
            self._next_id += 1
        try:
            frame = protocol.encode_request(build(request_id))
        except ValueError as exc:  # too large: nothing was sent
            raise InvalidParameter(f"{exc}; store large values in files or PostgreSQL") from None
        with self._lock:
            if self._failure is not None:
                raise _copy(self._failure)
            self._pending[request_id] = (loop, future)
            first = self._watchers.get(loop, 0) == 0
            self._watchers[loop] = self._watchers.get(loop, 0) + 1
        if first:
            loop.add_reader(self._read_fd, self._pump)
        # Not under self._lock: while a large frame waits for pipe space, other loops must
        # still be able to read their replies.
        try:
            with self._write_lock:
                if self._failure is not None:  # closed meanwhile: the fd may be gone
                    raise _copy(self._failure)
                self._write(frame)
        except (OSError, SidecarError) as exc:
            with self._lock:
                self._pending.pop(request_id, None)
            self._unwatch(loop)
            if isinstance(exc, SidecarError):
                raise
            # The sidecar is gone (nothing of this frame was read): so is this link.
            self._fail(self._death_error())
            raise LinkGone(f"cannot write to the {self.describe}: {exc}") from exc
        if first:
            self._poll_briefly(future)
        return await future

    def _poll_briefly(self, future: asyncio.Future[Any]) -> None:
        """Read replies for up to `POLL_S` without sleeping, until `future`'s has come.

        A short query's reply comes back within it, and the event loop never sleeps for it.
        When one did not come in time (a longer query), the next `POLL_BACKOFF` requests skip
        the poll, so a run of long queries burns a fifth of the poll time each, and other tasks
        on the loop wait at most `POLL_S`.
        """
        if not POLL_S:
            return
        if self._sleep_next:
            self._sleep_next -= 1
            return
        deadline = time.perf_counter() + POLL_S
        while not future.done():
            if time.perf_counter() > deadline:
                self._sleep_next = POLL_BACKOFF
                return
            self._pump()

    def _pump(self) -> None:
        """Read every reply that is there and resolve each (an event loop's reader callback)."""
        with self._read_lock:
            if self._output_closed:
                return
            bodies: list[bytes] = []
            try:
                while data := self._read():
                    bodies += self._reader.feed(data)
                self._ended = True
            except BlockingIOError:
                pass
            except Exception as exc:  # a broken pipe or an oversized frame: the link is unusable
                self._stderr.append(f"(reader: {exc!r})")
                self._ended = True
        for body in bodies:
            try:
                reply = protocol.decode_reply(body)
            except Exception as exc:
                self._stderr.append(f"(reader: {exc!r})")
                self._ended = True
                break
            if isinstance(reply, protocol.Closed) and reply.id == 0:
                self._let_go = True  # it closed our connection; it serves other processes still
                self._fail(SidecarCrashed(f"the {self.describe} was closed"))
                break
            self._deliver(reply)
        if self._ended and self._failure is None:  # not closed by us: the sidecar died
            self._fail(self._death_error())

    def _unwatch(self, loop: asyncio.AbstractEventLoop) -> None:
        """One request of `loop` is done (run on that loop): it stops watching after its last."""
        with self._lock:
            left = self._watchers.get(loop, 0) - 1
            if left > 0:
                self._watchers[loop] = left
                return
            self._watchers.pop(loop, None)
        if not loop.is_closed():
            loop.remove_reader(self._read_fd)
        self._close_output_if_done()

    def _deliver(self, reply: protocol.Reply) -> None:
        with self._lock:
            waiter = self._pending.pop(reply.id, None)
        if waiter is None:
            if isinstance(reply, protocol.Error):
                self._stderr.append(f"(unsolicited error: {reply.code} {reply.message})")
            return
        self._resolve(waiter, reply)

    def _resolve(self, waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]], outcome: Any) -> None:
        """Settle a request on its own loop; the loop then stops watching if it was its last."""
        loop, future = waiter

        def settle() -> None:
            self._unwatch(loop)
            if future.done():  # the caller was cancelled
                return
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            settle()
            return
        try:
            loop.call_soon_threadsafe(settle)
        except RuntimeError:  # that event loop is closed; nobody is waiting any more
            with self._lock:
                self._watchers.pop(loop, None)

    def _death_error(self) -> SidecarCrashed:
        if self.process is not None:
            try:
                code = self.process.wait(timeout=2)
                how = f"exited with code {code}" if code >= 0 else f"was killed by signal {-code}"
            except subprocess.TimeoutExpired:
                how = "closed its output"
        else:
            how = "closed the connection"
        tail = "\n".join(self._stderr)
        message = (
            f"the {self.describe} {how}; requests in flight failed and may or may not have "
            "been applied. The next request starts a new sidecar."
        )
        if tail:
            message += f" Its last log lines:\n{tail}"
        return SidecarCrashed(message)

    def _fail(self, error: SidecarError) -> None:
        with self._lock:
            if self._failure is None:
                self._failure = error
            pending, self._pending = self._pending, {}
        for waiter in pending.values():
            self._resolve(waiter, _copy(error))

    def _close_output_if_done(self) -> None:
        """Close our reading end once the link has failed and no event loop watches it (a
        watched fd must stay open: its number could come back as another link's)."""
        with self._lock:
            if self._failure is None or any(not loop.is_closed() for loop in self._watchers):
                return
        with self._read_lock:
            if not self._output_closed:
                self._output_closed = True
                _quietly(self._close_read)

    def close_now(self) -> None:
        """Let go without waiting: close our end; a child sidecar sees EOF and exits."""
        self._fail(SidecarCrashed(f"the {self.describe} was closed"))
        if self._sock is not None:
            _quietly(lambda: self._sock.shutdown(socket.SHUT_RDWR))
        if self.process is not None and self.process.stdin is not None:
            with self._write_lock:  # no write is using the fd when it closes
                _quietly(self.process.stdin.close)

    def abandon(self) -> None:
        """In a child forked from the process that opened this link: close the child's copies
        of its fds, sending nothing (the parent's link goes on), and fail it here."""
        self._failure = StoreUnusableAfterFork("this link belongs to the process that forked this one")
        self._pending = {}
        self._watchers = {}
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr) if self.process else ():
            if stream is not None:
                _quietly(stream.close)
        if self._sock is not None:
            _quietly(self._sock.close)  # a copy of the fd: the connection stays the parent's
        self._output_closed = True

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Let go and wait until a child sidecar has closed the database or handed it over.

        A sidecar that other processes still use keeps running for them; one that neither
        says it let go (a final `closed` frame) nor exits in `timeout` is killed.
        """
        self.close_now()
        deadline = time.monotonic() + timeout
        if self.process is not None:
            while not (self._let_go or self._ended or self._output_closed):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:  # in slices: an event loop may close the fd, which would not wake select
                    _readable(self._read_fd, min(remaining, 0.1))
                except (OSError, ValueError):  # closed meanwhile by an event loop that watched it
                    break
                self._pump()
            if not self._let_go:
                try:
                    self.process.wait(max(deadline - time.monotonic(), 0))
                except subprocess.TimeoutExpired:
                    self.process.kill()  # wedged
                    self.process.wait()
        self._close_output_if_done()


class LinkGone(SidecarCrashed):
    """A request could not be written: the sidecar had gone while nothing was in flight."""


def _copy(error: SidecarError) -> SidecarError:
    """A new instance per raise, so tracebacks of different requests do not pile up on one."""
    return type(error)(str(error))


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except OSError:
        pass


class Sidecar:
    """The sidecar of one database, started on first use and restarted after a crash."""

    def __init__(self, data_dir: DataDir | None) -> None:
        self.data_dir = data_dir  # None: an in-memory database
        self._link: Link | None = None
        self._start_lock = threading.Lock()
        self._forked_away = False  # in memory, and this process is a fork of the one that opened it
        _live_sidecars.add(self)

    @property
    def location(self) -> str:
        return "memory://" if self.data_dir is None else str(self.data_dir.root)

    @property
    def link(self) -> Link | None:
        return self._link

    async def request(self, build: Callable[[int], protocol.Request]) -> protocol.Reply:
        if self._forked_away:
            raise StoreUnusableAfterFork(
                "this in-memory database lives in the process that opened it, not in this forked "
                "child: open a store in the child, or use a directory, which children share"
            )
        link = self._link
        if link is None or not link.alive:
            link = await asyncio.to_thread(self._connect)
        try:
            return await link.request(build)
        except LinkGone:  # it died while idle; nothing was sent, so start anew and send it
            link = await asyncio.to_thread(self._connect)
            return await link.request(build)

    def _connect(self) -> Link:
        with self._start_lock:
            if self._link is not None and self._link.alive:
                return self._link
            if self._link is not None:
                self._link.stop(timeout=2)
            self._link = self._spawn_memory() if self.data_dir is None else self._open_dir(self.data_dir)
            return self._link

    def _open_dir(self, data_dir: DataDir) -> Link:
        deadline = time.monotonic() + SHARE_TIMEOUT
        while True:
            lock_fd = data_dir.try_lock()
            if lock_fd is not None:
                try:
                    data_dir.prepare(Template().ensure())
                    socket_path = data_dir.choose_socket()
                    data_dir.write_holder(lock_fd, f"python pid {os.getpid()}, starting its sidecar", socket_path)
                    link = self._spawn(
                        ["--data-dir", str(data_dir.pgdata), "--socket", socket_path, "--lock-fd", str(lock_fd)],
                        lock_fd=lock_fd,
                    )
                    data_dir.write_holder(lock_fd, f"python pid {os.getpid()}, sidecar pid {link.ready.pid}", socket_path)
                    return link
                finally:
                    os.close(lock_fd)  # the child keeps the lock through its inherited copy
            link = self._join(data_dir)
            if link is not None:
                return link
            if time.monotonic() > deadline:
                raise DataDirLocked(
                    f"{data_dir.root} is locked by {data_dir.holder()}, whose sidecar does not answer "
                    f"on {data_dir.published_socket() or 'its socket'}; stop that process or choose another directory"
                )
            time.sleep(0.05)  # the holder is starting up or shutting down

    def _join(self, data_dir: DataDir) -> Link | None:
        """Connect to the sidecar another process runs for this directory, if it answers and
        is this user's (SocketUnsafe if something else listens there)."""
        path = data_dir.published_socket()
        if path is None:
            return None  # the holder has not said where yet
        try:
            check_socket(path)
        except OSError:
            return None  # not there yet, or gone
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            check_peer(sock, path)
            reader = protocol.FrameReader()
            ready = _await_ready(sock.fileno(), reader, f"shared sidecar at {path}", None)
        except (OSError, SidecarStartFailed):
            sock.close()
            return None
        except BaseException:
            sock.close()
            raise
        return Link(
            describe=f"shared PGlite sidecar (pid {ready.pid}) of {data_dir.root}",
            read_fd=sock.fileno(),
            read=lambda: sock.recv(1 << 16, socket.MSG_DONTWAIT),
            close_read=sock.close,
            write=sock.sendall,
            reader=reader,
            ready=ready,
            sock=sock,
        )

    def _spawn_memory(self) -> Link:
        return self._spawn(["--memory", "--template", str(Template().ensure().memory_source())], lock_fd=None)

    def _spawn(self, args: list[str], *, lock_fd: int | None) -> Link:
        script = sidecar_dir() / "server.mjs"
        process = subprocess.Popen(
            [find_node(), str(script), *args, "--owner-pid", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=() if lock_fd is None else (lock_fd,),
        )
        assert process.stdin is not None and process.stdout is not None
        stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        threading.Thread(
            target=_drain_stderr, args=(process, stderr), name="timestep-sidecar-stderr", daemon=True
        ).start()
        reader = protocol.FrameReader()
        what = f"PGlite sidecar for {self.location}"
        try:
            ready = _await_ready(process.stdout.fileno(), reader, what, (process, stderr))
        except BaseException:
            process.kill()
            process.wait()
            raise
        stdin_fd, stdout_fd = process.stdin.fileno(), process.stdout.fileno()
        os.set_blocking(stdout_fd, False)  # read only when there is something (Link._pump)
        return Link(
            describe=f"PGlite sidecar (pid {ready.pid}) of {self.location}",
            read_fd=stdout_fd,
            read=lambda: os.read(stdout_fd, 1 << 16),
            close_read=process.stdout.close,
            write=lambda frame: _write_all(stdin_fd, frame),
            reader=reader,
            ready=ready,
            process=process,
            stderr=stderr,
        )

    async def aclose(self) -> None:
        """Ask the sidecar to close its database and exit, and wait until it has."""
        link, self._link = self._link, None
        _live_sidecars.discard(self)
        if link is None:
            return
        if link.alive and link.process is not None:
            try:
                await link.request(lambda request_id: protocol.Close(id=request_id))
            except SidecarError:
                pass
        await asyncio.to_thread(link.stop)

    def stop_now(self) -> None:
        """Stop from synchronous code (interpreter exit)."""
        link, self._link = self._link, None
        if link is not None:
            link.stop()

    def after_fork_in_child(self) -> None:
        """This process was forked: drop the parent's link without touching it. A directory's
        next request joins the running sidecar through its socket, as another process would;
        an in-memory database cannot be reached from here."""
        self._start_lock = threading.Lock()  # another thread may have held it at the fork
        link, self._link = self._link, None
        if link is not None:
            link.abandon()
        if self.data_dir is None:
            self._forked_away = True


def _readable(fd: int, timeout: float) -> bool:
    """Wait until `fd` can be read, up to `timeout` seconds (poll(): select() refuses fds past
    1023, which a process holding many files, sockets or SQLite connections reaches)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _drain_stderr(process: subprocess.Popen[bytes], lines: collections.deque[str]) -> None:
    """Keep the sidecar's last log lines. Reads the fd itself: a file object's lock, held by a
    thread blocked in readline(), would be held for good in a child forked meanwhile."""
    assert process.stderr is not None
    fd = process.stderr.fileno()
    pending = b""
    while chunk := os.read(fd, 1 << 16):
        *complete, pending = (pending + chunk).split(b"\n")
        lines.extend(line.decode(errors="replace").rstrip() for line in complete)
    if pending:
        lines.append(pending.decode(errors="replace").rstrip())
    process.stderr.close()


def _await_ready(
    fd: int,
    reader: protocol.FrameReader,
    what: str,
    child: tuple[subprocess.Popen[bytes], collections.deque[str]] | None,
) -> protocol.Ready:
    """Block until the sidecar's first frame: `ready`, or an error frame with the real cause."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not _readable(fd, remaining):
            raise SidecarStartFailed(f"the {what} did not become ready in {START_TIMEOUT:.0f} s")
        data = os.read(fd, 1 << 16)
        if not data:
            detail = ""
            if child is not None:
                process, stderr = child
                code = process.wait()
                detail = f" (exit code {code})" + (": " + "\n".join(stderr) if stderr else "")
            raise SidecarStartFailed(f"the {what} exited before it was ready{detail}")
        bodies = reader.feed(data)
        if bodies:
            first = protocol.decode_reply(bodies[0])
            if isinstance(first, protocol.Ready):
                return first
            if isinstance(first, protocol.Error):
                raise SidecarStartFailed(first.message)
            raise SidecarStartFailed(f"the {what} sent {type(first).__name__} before ready")


_live_sidecars: weakref.WeakSet[Sidecar] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for sidecar in list(_live_sidecars):
        sidecar.after_fork_in_child()


# multiprocessing's fork start method, gunicorn and Celery prefork fork a process that may
# hold links: a child writing into its parent's pipe would interleave frames and read replies
# meant for the parent (another request's rows).
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _stop_all() -> None:
    for sidecar in list(_live_sidecars):
        sidecar.stop_now()
