"""The sidecar wire protocol: 4-byte big-endian length, then a MessagePack body.

Every message is a `msgspec.Struct` tagged by its `type` field. Requests carry an `id`
chosen by the client; the reply to a request carries the same `id`. Values travel as
PostgreSQL text (see `adapt.py`), so the sidecar never interprets them. Parameters are the
text's UTF-8 bytes (MessagePack bin, copied into the Bind message as they are; the sidecar takes
a MessagePack str too, as js/sidecar-client.mjs sends); result values are str.
"""

from __future__ import annotations

import struct

import msgspec

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 30  # replies: 1 GiB; PostgreSQL's own limit for one value is the same.
# Requests: the sidecar refuses a longer frame before buffering any of it (sidecar/frames.mjs).
MAX_REQUEST_FRAME = 64 << 20


class Statement(msgspec.Struct, array_like=True):
    sql: str
    params: list[bytes | None]
    types: list[int]


# Requests (Python -> sidecar)


# Each of the three SQL requests may carry a `setup` statement: the search_path it needs
# (`SET search_path TO DEFAULT`, or a namespace's schema then pg_temp; the sidecar accepts no
# other). PGlite has one session for every client, so the sidecar runs it first whenever it
# differs from the path in force. `relaxed`: answer without waiting for the WAL to be synced.


class Query(msgspec.Struct, tag="query", tag_field="type", omit_defaults=True):
    id: int
    sql: str
    params: list[bytes | None]
    types: list[int]
    setup: str | None = None
    relaxed: bool = False


class Exec(msgspec.Struct, tag="exec", tag_field="type", omit_defaults=True):
    """Many statements, no parameters (simple query protocol)."""

    id: int
    sql: str
    setup: str | None = None
    relaxed: bool = False


class Batch(msgspec.Struct, tag="batch", tag_field="type", omit_defaults=True):
    """Statements run in order in one transaction: all or nothing."""

    id: int
    statements: list[Statement]
    setup: str | None = None
    relaxed: bool = False


class Close(msgspec.Struct, tag="close", tag_field="type"):
    id: int


Request = Query | Exec | Batch | Close


# Replies (sidecar -> Python)


class Ready(msgspec.Struct, tag="ready", tag_field="type"):
    id: int
    pid: int
    node: str
    pglite: str
    durable: bool = False  # a directory: writes are answered once their WAL is synced


class Result(msgspec.Struct, tag="result", tag_field="type"):
    id: int
    names: list[str]
    types: list[int]
    rows: list[list[str | None]]
    affected: int


class BatchResult(msgspec.Struct, tag="batch_result", tag_field="type"):
    id: int
    affected: list[int]


class Error(msgspec.Struct, tag="error", tag_field="type"):
    """`code` is a SQLSTATE for SQL errors, or `startup` / `protocol` / `internal`, or
    `session_state` (a statement that would outlast its request, refused before it ran) /
    `open_transaction` (a request that ended inside a transaction, rolled back)."""

    id: int
    code: str
    message: str
    detail: str | None = None
    hint: str | None = None
    index: int | None = None


class Closed(msgspec.Struct, tag="closed", tag_field="type"):
    """The reply to `close`; with id 0, the sidecar's last frame to its owner: it has closed
    the database, or handed it over to other processes still connected to its socket."""

    id: int


Reply = Ready | Result | BatchResult | Error | Closed

_encoder = msgspec.msgpack.Encoder()
_reply_decoder = msgspec.msgpack.Decoder(Reply)
_request_decoder = msgspec.msgpack.Decoder(Request)


def encode_frame(message: Request | Reply) -> bytes:
    """One message as a length-prefixed frame."""
    body = _encoder.encode(message)
    return HEADER.pack(len(body)) + body


def encode_request(message: Request) -> bytes:
    """A request as a frame; a `ValueError` if it is over the sidecar's limit (nothing is sent)."""
    frame = encode_frame(message)
    if len(frame) - HEADER.size > MAX_REQUEST_FRAME:
        raise ValueError(
            f"a request of {len(frame) - HEADER.size} bytes is over the embedded database's limit of "
            f"{MAX_REQUEST_FRAME >> 20} MiB per request"
        )
    return frame


def decode_reply(body: bytes | memoryview) -> Reply:
    return _reply_decoder.decode(body)


def decode_request(body: bytes | memoryview) -> Request:
    return _request_decoder.decode(body)


class FrameReader:
    """Reassembles frames from a byte stream split at arbitrary boundaries."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the bodies of every frame now complete, in order."""
        self._buffer += data
        bodies: list[bytes] = []
        start = 0
        while len(self._buffer) - start >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buffer, start)
            if length > MAX_FRAME:
                raise ValueError(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
            end = start + HEADER.size + length
            if end > len(self._buffer):
                break
            bodies.append(bytes(self._buffer[start + HEADER.size : end]))
            start = end
        if start:
            del self._buffer[:start]
        return bodies

    @property
    def pending(self) -> int:
        """Bytes held that do not yet make a whole frame."""
        return len(self._buffer)
