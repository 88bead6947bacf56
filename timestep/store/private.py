"""Places only this user can reach: the sidecar's socket and the directories holding it.

A process that shares a running sidecar sends it the conversation and trusts what it reads
back, so the socket must be this user's alone. It lives in the data directory when the path
fits in a unix socket address, else in a per-user directory: $XDG_RUNTIME_DIR/timestep (made
by the system for this user alone), else <tmp>/timestep-<uid>. A directory owned by someone
else, or writable by group or others, is refused, never used: another user could replace the
socket there. Before anything is sent, the peer on the socket must be this user too.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import stat
import struct
import sys
import tempfile
from pathlib import Path

from ..errors import SocketUnsafe

SOCKET_PATH_LIMIT = 100  # sun_path is 104-108 bytes depending on the platform


def describe_owner(info: os.stat_result) -> str:
    """'uid 1001' (with the name where it has one), for messages."""
    try:
        import pwd

        return f"uid {info.st_uid} ({pwd.getpwuid(info.st_uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {info.st_uid}"


def unsafe_because(info: os.stat_result) -> str | None:
    """Why a directory with this lstat() is not this user's alone, or None if it is."""
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != os.getuid():
        return f"is owned by {describe_owner(info)}, not by you (uid {os.getuid()})"
    if info.st_mode & 0o022:
        return f"is writable by {'group and others' if info.st_mode & 0o022 == 0o022 else 'group' if info.st_mode & 0o020 else 'others'} (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def private_dir(path: Path) -> Path:
    """`path`, made (mode 0700) if missing; SocketUnsafe unless only this user can write in it."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise SocketUnsafe(f"cannot make {path} for the sidecar's socket: {exc.strerror}") from exc
    reason = unsafe_because(os.lstat(path))
    if reason:
        raise SocketUnsafe(
            f"{path} {reason}: another user could replace the sidecar's socket there. It is not "
            "yours to use: have it removed, or set XDG_RUNTIME_DIR (or TMPDIR) to a directory of your own"
        )
    return path


def _runtime_dir() -> Path | None:
    """$XDG_RUNTIME_DIR/timestep, if XDG_RUNTIME_DIR names a directory that is this user's alone."""
    configured = os.environ.get("XDG_RUNTIME_DIR", "")
    if not os.path.isabs(configured):
        return None
    try:
        if unsafe_because(os.lstat(configured)):
            return None
    except OSError:
        return None
    return Path(configured) / "timestep"


def socket_path_for(root: Path) -> str:
    """Where the sidecar of data directory `root` listens: `root/sidecar.sock` if it fits, else
    the first per-user directory (made here, and checked) in which the socket's path fits."""
    path = str(root / "sidecar.sock")
    if len(path.encode()) < SOCKET_PATH_LIMIT:
        return path
    name = hashlib.sha256(path.encode()).hexdigest()[:24] + ".sock"
    bases = [base for base in (_runtime_dir(), Path(tempfile.gettempdir()) / f"timestep-{os.getuid()}") if base]
    for base in bases:
        if len(str(base / name).encode()) < SOCKET_PATH_LIMIT:
            return str(private_dir(base) / name)
    raise SocketUnsafe(
        f"no place for the sidecar's socket: a unix socket's path must be under {SOCKET_PATH_LIMIT} bytes, and "
        f"{' and '.join(str(base) for base in bases)} are too long; set TMPDIR to a short directory of your own"
    )


def check_socket(path: str) -> None:
    """SocketUnsafe unless `path` is a socket of this user's in a directory only this user can write."""
    parent = os.path.dirname(path)
    reason = unsafe_because(os.lstat(parent))
    if reason:
        raise SocketUnsafe(f"the sidecar's socket directory {parent} {reason}: not connecting; have it removed")
    info = os.lstat(path)  # FileNotFoundError: nobody serves there (yet)
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
        what = "a socket" if stat.S_ISSOCK(info.st_mode) else "not a socket"
        raise SocketUnsafe(f"{path} is {what} owned by {describe_owner(info)}, not yours: not connecting; have it removed")


def peer_uid(sock: socket.socket) -> int | None:
    """The user id of the process at the other end of a connected unix socket (None where the
    platform cannot say)."""
    if hasattr(socket, "SO_PEERCRED"):  # Linux: struct ucred {pid, uid, gid}
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[1]
    if sys.platform == "darwin":  # LOCAL_PEERCRED: struct xucred {cr_version, cr_uid, ...}
        try:
            creds = sock.getsockopt(0, 0x001, 76)
        except OSError as exc:
            if exc.errno == errno.ENOPROTOOPT:
                return None
            raise
        return struct.unpack_from("=I", creds, 4)[0]
    return None


def check_peer(sock: socket.socket, path: str) -> None:
    """SocketUnsafe unless the process serving `path` runs as this user."""
    uid = peer_uid(sock)
    if uid is not None and uid != os.getuid():
        raise SocketUnsafe(
            f"the process listening on {path} runs as uid {uid}, not as you (uid {os.getuid()}): "
            "it is not your sidecar; nothing was sent"
        )
