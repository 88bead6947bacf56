"""Typed errors raised by timestep. Each message says what went wrong and what to do."""

from __future__ import annotations

from typing import Any


class TimestepError(Exception):
    """Base class of every error timestep raises."""


class StoreError(TimestepError):
    """The storage layer could not do what was asked."""


class ConfigurationError(StoreError, ValueError):
    """The arguments to `open_store` do not name a store timestep can open."""


class InvalidNamespace(ConfigurationError):
    """A namespace name timestep will not turn into a schema; the message says what is allowed."""


class StoreClosed(StoreError):
    """The store was used after `aclose()`."""


class InvalidParameter(StoreError, ValueError):
    """A query parameter cannot be stored (a NUL in text, an unsupported type); nothing was sent."""


class ConnectionFailed(StoreError):
    """PostgreSQL could not be reached, or ended the connection (a restart, an administrator's
    pg_terminate_backend): the pool drops that connection, and the next call gets a new one."""


class StatementRefused(StoreError):
    """A statement that would outlast its request (BEGIN, SET outside a batch, LISTEN, DECLARE,
    PREPARE, ...) was refused before it ran: each Store call runs in its own transaction and
    leaves the connection as it found it. `statement_index` says which statement of a batch."""

    def __init__(self, message: str, *, statement_index: int | None = None) -> None:
        self.statement_index = statement_index
        if statement_index is not None:
            message += f" (statement {statement_index} of the batch; nothing of the batch ran)"
        super().__init__(message)


class TransactionLeftOpen(StoreError):
    """A call ended inside a transaction (a script's BEGIN without COMMIT): it was rolled back.
    Statements that belong together go in one `execute_batch`."""


class DatabaseError(StoreError):
    """The database refused a statement. Carries the SQLSTATE code and the server's message."""

    def __init__(
        self,
        sqlstate: str,
        message: str,
        *,
        detail: str | None = None,
        hint: str | None = None,
        statement_index: int | None = None,
    ) -> None:
        self.sqlstate = sqlstate
        self.message = message
        self.detail = detail
        self.hint = hint
        self.statement_index = statement_index
        text = f"[{sqlstate}] {message}"
        if detail:
            text += f" (detail: {detail})"
        if hint:
            text += f" (hint: {hint})"
        if statement_index is not None:
            text += f" (statement {statement_index} of the batch; the whole batch was rolled back)"
        super().__init__(text)


class IntegrityError(DatabaseError):
    """SQLSTATE class 23: a constraint was violated."""


class UniqueViolation(IntegrityError):
    """SQLSTATE 23505."""


class ForeignKeyViolation(IntegrityError):
    """SQLSTATE 23503."""


class NotNullViolation(IntegrityError):
    """SQLSTATE 23502."""


class CheckViolation(IntegrityError):
    """SQLSTATE 23514."""


class DataError(DatabaseError):
    """SQLSTATE class 22: a value is out of range or malformed."""


class ProgrammingError(DatabaseError):
    """SQLSTATE class 42: the SQL itself is wrong (syntax, unknown table or column)."""


class SQLSyntaxError(ProgrammingError):
    """SQLSTATE 42601."""


class UndefinedTable(ProgrammingError):
    """SQLSTATE 42P01."""


class UndefinedColumn(ProgrammingError):
    """SQLSTATE 42703."""


class TransactionRollback(DatabaseError):
    """SQLSTATE class 40: serialization failure or deadlock; retrying may succeed."""


_BY_CODE: dict[str, type[DatabaseError]] = {
    "23505": UniqueViolation,
    "23503": ForeignKeyViolation,
    "23502": NotNullViolation,
    "23514": CheckViolation,
    "42601": SQLSyntaxError,
    "42P01": UndefinedTable,
    "42703": UndefinedColumn,
}
_BY_CLASS: dict[str, type[DatabaseError]] = {
    "23": IntegrityError,
    "22": DataError,
    "42": ProgrammingError,
    "40": TransactionRollback,
}


def database_error(
    sqlstate: str,
    message: str,
    *,
    detail: str | None = None,
    hint: str | None = None,
    statement_index: int | None = None,
) -> DatabaseError:
    """Build the most specific `DatabaseError` subclass for a SQLSTATE code."""
    cls = _BY_CODE.get(sqlstate) or _BY_CLASS.get(sqlstate[:2], DatabaseError)
    return cls(sqlstate, message, detail=detail, hint=hint, statement_index=statement_index)


class InvalidSessionItem(TimestepError, TypeError):
    """A session item cannot be stored as JSON; nothing was written."""


class InvalidSessionId(TimestepError, ValueError):
    """A session id the store cannot key a session by (over `MAX_SESSION_ID_BYTES`); nothing was sent."""


class InvalidBranch(TimestepError, ValueError):
    """An `AdvancedSession` branch operation was refused (no such turn or branch, a branch id
    used before, deleting "main"); nothing was changed. A ValueError, as in the SDK."""


class InvalidMemory(TimestepError, ValueError):
    """A memory operation got bad input (empty or oversized text, a bad scope, tag or limit);
    nothing was stored or changed."""


class MemoryNotFound(TimestepError, LookupError):
    """No memory with that id in this scope (another scope's ids are not visible)."""


class RunStateNotFound(TimestepError, LookupError):
    """There is no saved state for this run."""


class InvalidRunState(TimestepError, ValueError):
    """A stored run state cannot be resumed (unknown schema version, corrupt JSON, an agent the
    graph lacks); the stored row is left as it was."""


class InvalidDecision(InvalidRunState):
    """A recorded approval or rejection is not `{"approved": true|false, "message": text|null}`
    (the message names the run and the call); nothing was written or applied."""


class InvalidJournal(InvalidRunState):
    """A durable run's journal holds a step this process cannot replay (written by another
    version of the Agents SDK, or altered): the run is left as it is."""


class RunCancelled(TimestepError):
    """A durable streamed run was cancelled by its caller before its end: it is recorded failed
    with this error, its state and journal kept, and `RunStateStore.recover()` finishes it."""


class RunNotResumable(TimestepError):
    """A durable run cannot be started or resumed by this process, and nothing ran: it is
    finished, another process holds it (`lease_owner` until `lease_expires_at`), or the state
    given is not its latest save (`reason`: "finished", "held", "superseded", "missing" or
    "lost", when this process's hold ran out while it ran)."""

    def __init__(
        self,
        message: str,
        *,
        run_id: str,
        reason: str,
        status: str | None = None,
        lease_owner: str | None = None,
        lease_expires_at: Any = None,
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.reason = reason
        self.status = status
        self.lease_owner = lease_owner
        self.lease_expires_at = lease_expires_at


class UnconvertibleRunState(InvalidRunState):
    """A run state holds something the other language's SDK has no counterpart for (the
    message names the field); resume it in the SDK that paused it."""


class UnsupportedSchemaVersion(InvalidRunState):
    """A run state's `$schemaVersion` is not one of the pairs `timestep.crosslang` converts."""


class SidecarError(StoreError):
    """The embedded PGlite sidecar (a Node.js child process) failed."""


class NodeNotFound(SidecarError):
    """No usable Node.js (>= 20) runtime was found to host PGlite."""


class SidecarStartFailed(SidecarError):
    """The sidecar could not open the database; the message carries the real cause."""


class DataDirIncompatible(SidecarStartFailed):
    """The PGlite data directory was made by an incompatible PostgreSQL version."""


class DataDirUnusable(SidecarStartFailed):
    """The PGlite directory cannot hold a database: a file, read-only, full, owned by another
    user or writable by others, or a PostgreSQL data directory itself. Nothing was written."""


class SocketUnsafe(SidecarError):
    """The sidecar's socket, or the directory it lives in, is not this user's alone: another
    user could read the conversation or impersonate the database. Nothing was sent."""


class StoreUnusableAfterFork(SidecarError):
    """An in-memory PGlite database lives in the process that opened it: a forked child cannot
    use it. Open the store in the child, or use a directory (which children share)."""


class DataDirLocked(SidecarError):
    """Another process holds the PGlite data directory and could not be shared."""


class SidecarCrashed(SidecarError):
    """The sidecar died while requests were in flight; the next request starts a new one."""
