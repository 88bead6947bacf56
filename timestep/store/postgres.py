"""The server backend: PostgreSQL through a psycopg 3 async connection pool.

psycopg pools belong to the event loop that opened them, so a store keeps one small pool
per event loop it is used from (asyncio.run() twice, Runner.run_sync, a notebook kernel).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from ..errors import ConnectionFailed, InvalidParameter, StoreError, database_error
from .adapt import ADAPTERS, check_params
from .base import QueryResult, Statement, Store
from .namespace import schema_of

POOL_MAX = int(os.environ.get("TIMESTEP_PG_POOL_MAX", "10"))
CONNECT_TIMEOUT = 10


def redact(uri: str) -> str:
    """The connection string without its password, for messages."""
    try:
        params = conninfo_to_dict(uri)
    except psycopg.ProgrammingError:
        return "<unparsable connection string>"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **params)


def translate(exc: psycopg.Error, index: int | None = None) -> StoreError:
    """A psycopg error as the matching timestep error."""
    if exc.sqlstate:
        diag = exc.diag
        return database_error(
            exc.sqlstate,
            diag.message_primary or str(exc),
            detail=diag.message_detail,
            hint=diag.message_hint,
            statement_index=index,
        )
    if isinstance(exc, psycopg.OperationalError):
        return ConnectionFailed(f"lost the PostgreSQL connection: {exc}")
    if isinstance(exc, (psycopg.DataError, psycopg.ProgrammingError)):
        return InvalidParameter(f"cannot send a query parameter: {exc}")
    return StoreError(str(exc))


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute("SET TIME ZONE 'UTC'")  # the same as PGlite: datetimes come back in UTC


def _configure_for(search_path: str | None) -> Any:
    """The pool's per-connection setup: UTC, and a namespace's schema as the search_path."""
    if search_path is None:
        return _configure

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await _configure(conn)
        await conn.execute(f"SET search_path TO {search_path}")  # a checked, quoted schema name

    return configure


class PostgresStore(Store):
    """A store on a PostgreSQL server."""

    backend = "postgres"

    def __init__(self, uri: str, namespace: str | None = None) -> None:
        super().__init__(namespace)
        self._uri = uri
        self._configure = _configure_for(schema_of(namespace) if namespace is not None else None)
        # One pool per event loop, stored as the task that opens it: concurrent first requests
        # on a loop all await the same task, so a loop never gets two pools.
        self._pools: dict[asyncio.AbstractEventLoop, asyncio.Task[AsyncConnectionPool[Any]]] = {}

    @property
    def location(self) -> str:
        return redact(self._uri)

    async def _pool(self) -> AsyncConnectionPool[Any]:
        self._check_open()
        loop = asyncio.get_running_loop()
        opening = self._pools.get(loop)
        if opening is None:
            for stale in [other for other in self._pools if other.is_closed()]:
                del self._pools[stale]  # its loop is gone; its connections close when collected
            opening = self._pools[loop] = loop.create_task(self._open_pool())
        try:
            return await asyncio.shield(opening)
        except BaseException:
            if opening.done() and self._pools.get(loop) is opening:
                del self._pools[loop]  # it failed: the next request tries again
            raise

    async def _open_pool(self) -> AsyncConnectionPool[Any]:
        await self._check_reachable()
        pool = AsyncConnectionPool(
            self._uri,
            min_size=1,
            max_size=POOL_MAX,
            open=False,
            configure=self._configure,
            kwargs={
                "autocommit": True,
                "cursor_factory": psycopg.AsyncRawCursor,
                "context": ADAPTERS,
            },
        )
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        return pool

    async def _check_reachable(self) -> None:
        """Connect once, so an unreachable server fails with its real reason, not a pool timeout."""
        try:
            conn = await psycopg.AsyncConnection.connect(self._uri, connect_timeout=CONNECT_TIMEOUT)
        except psycopg.Error as exc:
            raise ConnectionFailed(
                f"cannot connect to PostgreSQL at {self.location}: {str(exc).strip()}; "
                "check PG_CONNECTION_URI and that the server is running"
            ) from exc
        await conn.close()

    async def query(self, sql: str, *params: Any) -> QueryResult:
        check_params(params)
        pool = await self._pool()
        async with pool.connection() as conn:
            try:
                cursor = conn.cursor(row_factory=tuple_row)
                await cursor.execute(sql, params or None)
                if cursor.description is None:
                    return QueryResult([], [], max(cursor.rowcount, 0))
                rows = await cursor.fetchall()
            except psycopg.Error as exc:
                raise translate(exc) from exc
            return QueryResult([column.name for column in cursor.description], rows, len(rows))

    async def execute_batch(self, statements: Iterable[Statement]) -> list[int]:
        batch: list[tuple[str, Sequence[Any]]] = [(sql, tuple(params)) for sql, params in statements]
        for _, params in batch:
            check_params(params)
        if not batch:
            return []
        pool = await self._pool()
        affected: list[int] = []
        async with pool.connection() as conn:
            try:
                async with conn.transaction():
                    cursor = conn.cursor()
                    for index, (sql, params) in enumerate(batch):
                        try:
                            await cursor.execute(sql, params or None)
                        except psycopg.Error as exc:
                            raise translate(exc, index) from exc
                        affected.append(max(cursor.rowcount, 0))
            except psycopg.Error as exc:  # the COMMIT itself failed (e.g. a deferred constraint)
                raise translate(exc) from exc
        return affected

    async def execute_script(self, sql: str) -> None:
        pool = await self._pool()
        async with pool.connection() as conn:
            try:
                await conn.execute(sql)
            except psycopg.Error as exc:
                raise translate(exc) from exc

    async def _close(self) -> None:
        pools, self._pools = self._pools, {}
        loop = asyncio.get_running_loop()
        for owner, opening in pools.items():
            if owner is loop:
                try:
                    pool = await opening
                except Exception:  # it never opened: nothing to close
                    continue
                await pool.close()
