"""The embedded backend: PGlite in a Node.js sidecar (see sidecar.py), one per data directory."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import Any

from ..errors import SidecarError, StatementRefused, TransactionLeftOpen, database_error
from . import protocol
from .adapt import RowDecoder, dump_params
from .base import QueryResult, Statement, Store
from .datadir import DataDir
from .namespace import schema_of
from .sidecar import Sidecar

_shared: dict[str, tuple[Sidecar, int]] = {}  # data dir -> (sidecar, stores using it)
_shared_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    global _shared_lock
    _shared_lock = threading.Lock()  # another thread may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def _acquire(data_dir: DataDir) -> Sidecar:
    key = str(data_dir.root)
    with _shared_lock:
        sidecar, users = _shared.get(key, (None, 0))
        if sidecar is None:
            sidecar = Sidecar(data_dir)
        _shared[key] = (sidecar, users + 1)
        return sidecar


def _release(sidecar: Sidecar) -> bool:
    """Drop one user; True when it was the last in this process."""
    key = sidecar.location
    with _shared_lock:
        current, users = _shared.get(key, (None, 0))
        if current is not sidecar:
            return True
        if users > 1:
            _shared[key] = (sidecar, users - 1)
            return False
        del _shared[key]
        return True


class PGliteStore(Store):
    """A store on embedded PGlite. Stores on the same directory in one process share a sidecar."""

    backend = "pglite"

    def __init__(
        self, sidecar: Sidecar, *, shared: bool, namespace: str | None = None, durability: str = "durable"
    ) -> None:
        super().__init__(namespace, durability)
        self._sidecar = sidecar
        self._shared = shared
        self._relaxed = durability != "durable"  # answered without waiting for the WAL's sync
        # Stores of every namespace share the directory's sidecar: each request says its path.
        # pg_temp last: a temp table never hides one of ours (see sidecar/isolation.mjs).
        self._setup = f"SET search_path TO {schema_of(namespace)}, pg_temp" if namespace is not None else "SET search_path TO DEFAULT"

    @classmethod
    def for_directory(
        cls, path: str | os.PathLike[str], namespace: str | None = None, durability: str = "durable"
    ) -> PGliteStore:
        return cls(_acquire(DataDir(path)), shared=True, namespace=namespace, durability=durability)

    @classmethod
    def in_memory(cls, namespace: str | None = None) -> PGliteStore:
        """Nothing of it outlasts the process: there is nothing to sync, whatever is asked."""
        return cls(Sidecar(None), shared=False, namespace=namespace, durability="none")

    @property
    def location(self) -> str:
        return self._sidecar.location

    @property
    def sidecar(self) -> Sidecar:
        return self._sidecar

    async def _request(self, build: Any) -> protocol.Reply:
        self._check_open()
        reply = await self._sidecar.request(build)
        if isinstance(reply, protocol.Error):
            if reply.code == "session_state":
                raise StatementRefused(reply.message, statement_index=reply.index)
            if reply.code == "open_transaction":
                raise TransactionLeftOpen(reply.message)
            if len(reply.code) == 5:  # a SQLSTATE
                raise database_error(
                    reply.code,
                    reply.message,
                    detail=reply.detail,
                    hint=reply.hint,
                    statement_index=reply.index,
                )
            raise SidecarError(f"the sidecar refused a request ({reply.code}): {reply.message}")
        return reply

    async def query(self, sql: str, *params: Any) -> QueryResult:
        texts, types = dump_params(params)
        reply = await self._request(
            lambda request_id: protocol.Query(
                id=request_id, sql=sql, params=texts, types=types, setup=self._setup, relaxed=self._relaxed
            )
        )
        assert isinstance(reply, protocol.Result)
        rows: list[tuple[Any, ...]] = []
        if reply.rows:
            decoder = RowDecoder(reply.types)
            rows = [decoder.decode(row) for row in reply.rows]
        return QueryResult(reply.names, rows, reply.affected)

    async def execute_batch(self, statements: Iterable[Statement]) -> list[int]:
        encoded = []
        for sql, params in statements:
            texts, types = dump_params(tuple(params))
            encoded.append(protocol.Statement(sql=sql, params=texts, types=types))
        if not encoded:
            return []
        reply = await self._request(
            lambda request_id: protocol.Batch(id=request_id, statements=encoded, setup=self._setup, relaxed=self._relaxed)
        )
        assert isinstance(reply, protocol.BatchResult)
        return reply.affected

    async def execute_script(self, sql: str) -> None:
        await self._request(lambda request_id: protocol.Exec(id=request_id, sql=sql, setup=self._setup, relaxed=self._relaxed))

    async def _close(self) -> None:
        if not self._shared or _release(self._sidecar):
            await self._sidecar.aclose()
