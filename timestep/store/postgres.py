"""The server backend: PostgreSQL through a psycopg 3 async connection pool.

psycopg pools belong to the event loop that opened them, so a store keeps one small pool
per event loop it is used from (asyncio.run() twice, Runner.run_sync, a notebook kernel).
A pool is closed on its own loop as that loop shuts down (see `_close_with_loop`), so a loop
that ends leaves no connection open behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from ..errors import ConnectionFailed, InvalidParameter, StoreError, TransactionLeftOpen, database_error
from .adapt import ADAPTERS, check_params
from .base import QueryResult, Statement, Store
from .namespace import schema_of
from .statements import check_batch, check_statement

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


# admin_shutdown (pg_terminate_backend, a fast shutdown), crash_shutdown, cannot_connect_now.
_CONNECTION_ENDED = {"57P01", "57P02", "57P03"}


def translate(exc: psycopg.Error, index: int | None = None) -> StoreError:
    """A psycopg error as the matching timestep error."""
    if exc.sqlstate in _CONNECTION_ENDED:
        return ConnectionFailed(f"PostgreSQL ended the connection ([{exc.sqlstate}] {exc.diag.message_primary or exc}); try again")
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


# What a script may have changed on its connection, undone after it (the pool's setup is
# then run again): a Store call leaves its connection as it found it.
RESET_AFTER_SCRIPT = "RESET ALL; SET SESSION AUTHORIZATION DEFAULT; UNLISTEN *; CLOSE ALL; DISCARD TEMP"
# Worded as the sidecar words it (sidecar/database.mjs).
TRANSACTION_LEFT_OPEN = (
    "the script ended inside a transaction, which was rolled back: a Store call is a transaction "
    "of its own. End the script with COMMIT, or run statements that belong together with execute_batch"
)


def _setup_sql(namespace: str | None, durability: str) -> str:
    """A connection's setup: UTC (as PGlite: datetimes come back in UTC); a namespace's schema,
    then pg_temp (a temp table never hides one of ours); and, relaxed, commits that do not
    wait for the WAL's flush."""
    statements = ["SET TIME ZONE 'UTC'"]
    if namespace is not None:
        statements.append(f"SET search_path TO {schema_of(namespace)}, pg_temp")  # a checked, quoted name
    if durability == "relaxed":
        statements.append("SET synchronous_commit TO off")
    return "; ".join(statements)


async def _close_with_loop(
    pool: AsyncConnectionPool[Any], connections: weakref.WeakSet[psycopg.AsyncConnection[Any]]
) -> AsyncGenerator[None, None]:
    """Close `pool` and its `connections` when its event loop shuts down. An async generator,
    started once: a loop that shuts down cleanly (asyncio.run, asyncio.Runner) closes every
    generator it started (loop.shutdown_asyncgens) while it still runs, so the connections
    end on the loop they belong to. Not in a forked child: the connections are its parent's."""
    pid = os.getpid()
    try:
        yield
    finally:
        if os.getpid() == pid:
            # By now asyncio.run has cancelled every task, the pool's workers too, and the
            # pool's close() stops with their CancelledError before closing connections.
            with contextlib.suppress(asyncio.CancelledError):
                await pool.close()
            for connection in list(connections):
                await connection.close()


def _closed_since(opening: asyncio.Task[AsyncConnectionPool[Any]]) -> bool:
    """Whether a pool that opened was closed since by its loop, which lives on: Runner.run_sync
    flushes its loop's async generators after each run (see `_close_with_loop`)."""
    return opening.done() and not opening.cancelled() and opening.exception() is None and opening.result().closed


_live_stores: weakref.WeakSet[PostgresStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child must not use its parent's connections: it opens its own pools."""
    for store in list(_live_stores):
        store._pools = {}
        store._closers = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class PostgresStore(Store):
    """A store on a PostgreSQL server."""

    backend = "postgres"

    def __init__(self, uri: str, namespace: str | None = None, durability: str = "durable") -> None:
        super().__init__(namespace, durability)
        self._uri = uri
        self._setup = _setup_sql(namespace, durability)
        # One pool per event loop, stored as the task that opens it: concurrent first requests
        # on a loop all await the same task, so a loop never gets two pools.
        self._pools: dict[asyncio.AbstractEventLoop, asyncio.Task[AsyncConnectionPool[Any]]] = {}
        # Each pool's _close_with_loop generator (the loop holds them only weakly).
        self._closers: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}
        _live_stores.add(self)

    @property
    def location(self) -> str:
        return redact(self._uri)

    @contextlib.asynccontextmanager
    async def listening(self, channel: str) -> AsyncIterator[AsyncIterator[str]]:
        """Listen on `channel` (on a connection of its own, for the `async with`): what it
        yields is an iterator of the payloads of every NOTIFY from the moment it is entered.
        LISTEN outlasts a request, so Store calls refuse it."""
        async with await psycopg.AsyncConnection.connect(self._uri, autocommit=True) as connection:
            await connection.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
            notifications = connection.notifies()
            try:
                yield (notification.payload async for notification in notifications)
            finally:
                # A caller that stopped iterating (break, return) left it suspended holding the
                # connection's lock, which closing the connection needs.
                await notifications.aclose()

    async def _pool(self) -> AsyncConnectionPool[Any]:
        self._check_open()
        loop = asyncio.get_running_loop()
        opening = self._pools.get(loop)
        if opening is not None and _closed_since(opening):
            opening = None
        if opening is None:
            for stale in [other for other in self._pools if other.is_closed()]:
                del self._pools[stale]  # its loop is gone (and closed the pool, if it shut down cleanly)
                self._closers.pop(stale, None)
            opening = self._pools[loop] = loop.create_task(self._open_pool())
        try:
            return await asyncio.shield(opening)
        except BaseException:
            if opening.done() and self._pools.get(loop) is opening:
                del self._pools[loop]  # it failed: the next request tries again
            raise

    async def _open_pool(self) -> AsyncConnectionPool[Any]:
        await self._check_reachable()
        connections: weakref.WeakSet[psycopg.AsyncConnection[Any]] = weakref.WeakSet()

        async def configure(connection: psycopg.AsyncConnection[Any]) -> None:
            connections.add(connection)
            await self._configure(connection)

        pool = AsyncConnectionPool(
            self._uri,
            min_size=1,
            max_size=POOL_MAX,
            open=False,
            configure=configure,
            kwargs={
                "autocommit": True,
                "cursor_factory": psycopg.AsyncRawCursor,
                "context": ADAPTERS,
            },
        )
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        closer = _close_with_loop(pool, connections)
        await anext(closer)
        self._closers[asyncio.get_running_loop()] = closer
        return pool

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(self._setup)

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
        check_statement(sql)
        check_params(params)
        pool = await self._pool()
        async with pool.connection() as conn:
            try:
                cursor = conn.cursor(row_factory=tuple_row)
                # Text with a `;` may hold several statements, which psycopg would send as one
                # simple query: prepared, it is one statement or an error, as on PGlite.
                await cursor.execute(sql, params or None, prepare=True if not params and ";" in sql else None)
                if cursor.description is None:
                    return QueryResult([], [], max(cursor.rowcount, 0))
                rows = await cursor.fetchall()
            except psycopg.Error as exc:
                raise translate(exc) from exc
            return QueryResult([column.name for column in cursor.description], rows, len(rows))

    async def execute_batch(self, statements: Iterable[Statement]) -> list[int]:
        batch: list[tuple[str, Sequence[Any]]] = [(sql, tuple(params)) for sql, params in statements]
        check_batch([sql for sql, _ in batch])
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
            failure: StoreError | None = None
            try:
                await conn.execute(sql)
            except psycopg.Error as exc:
                failure = translate(exc)
            if conn.broken:
                raise failure or ConnectionFailed("lost the PostgreSQL connection during a script")
            try:
                left_open = conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
                if left_open:
                    await conn.rollback()
                await conn.execute(RESET_AFTER_SCRIPT)
                await self._configure(conn)
            except psycopg.Error as exc:
                await conn.close()  # never back into the pool as the script left it
                raise translate(exc) from exc
            if left_open:
                raise TransactionLeftOpen(TRANSACTION_LEFT_OPEN)
            if failure is not None:
                raise failure

    async def _close(self) -> None:
        pools, self._pools = self._pools, {}
        closers, self._closers = self._closers, {}
        loop = asyncio.get_running_loop()
        for owner, opening in pools.items():
            if owner is loop:
                try:
                    pool = await opening
                except Exception:  # it never opened: nothing to close
                    continue
                closer = closers.get(owner)
                if closer is not None:
                    await closer.aclose()  # closes the pool and its connections
                else:
                    await pool.close()
