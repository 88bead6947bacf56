"""The one async Store API that both backends implement."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ..errors import StoreClosed

Statement = tuple[str, Sequence[Any]]


@dataclass(frozen=True)
class QueryResult:
    """What one statement returned: column names, rows as tuples, and rows affected."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    affected: int

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


class Store(abc.ABC):
    """An open database: PostgreSQL or embedded PGlite, one SQL dialect with `$1` placeholders.

    Every method runs one statement in its own transaction, except `execute_batch`, which runs
    several in one transaction, and `execute_script`, which runs many statements without
    parameters. Values come back as psycopg returns them, on both backends.

    A call leaves the connection as it found it (on PGlite every client of a directory shares
    one PostgreSQL session): statements that would outlast it raise `StatementRefused` before
    anything runs, and a script that ends inside a transaction is rolled back and raises
    `TransactionLeftOpen` (see statements.py).
    """

    backend: str  # "pglite" or "postgres"

    def __init__(self, namespace: str | None = None, durability: str = "durable") -> None:
        self._closed = False
        self.namespace = namespace  # None: the default schema (see namespace.py)
        # "durable": a write is acknowledged once it would survive an OS crash or power loss;
        # "relaxed": once it is in the database, which a process crash does not lose;
        # "none": an in-memory database, gone with its process.
        self.durability = durability

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the data lives, for messages (a directory, `memory://`, or a URI without password)."""

    @abc.abstractmethod
    async def query(self, sql: str, *params: Any) -> QueryResult:
        """Run one statement; return its columns, rows and the rows it affected (or returned)."""

    async def fetch(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        """Run one statement and return its rows as dicts."""
        return (await self.query(sql, *params)).dicts()

    async def fetchrow(self, sql: str, *params: Any) -> dict[str, Any] | None:
        """The first row, or None when there is none."""
        rows = await self.fetch(sql, *params)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *params: Any) -> Any:
        """The first column of the first row, or None when there is no row."""
        row = await self.fetchrow(sql, *params)
        return None if row is None else next(iter(row.values()), None)

    async def execute(self, sql: str, *params: Any) -> int:
        """Run one statement; return the rows it affected (or returned)."""
        return (await self.query(sql, *params)).affected

    @abc.abstractmethod
    async def execute_batch(self, statements: Iterable[Statement]) -> list[int]:
        """Run `(sql, params)` statements in order in one transaction: all take effect or none.

        Returns the rows each affected. If one fails, the whole batch is rolled back and the
        error's `statement_index` says which.
        """

    @abc.abstractmethod
    async def execute_script(self, sql: str) -> None:
        """Run many `;`-separated statements that take no parameters."""

    @abc.abstractmethod
    async def _close(self) -> None: ...

    async def aclose(self) -> None:
        """Close the store; later calls raise `StoreClosed`. Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        await self._close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"the store at {self.location} is closed; open a new one with open_store()")

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.location} ({state})>"
