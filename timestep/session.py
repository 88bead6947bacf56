"""`Session`: Agents SDK conversation history, stored in PostgreSQL or embedded PGlite.

The tables are the SDK's `SQLiteSession` layout in PostgreSQL types (`agent_sessions`,
`agent_messages` with `message_data json`), so the same operational SQL works on every store.
Every method is one statement or one atomic batch: one round trip.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agents.items import TResponseInputItem
from agents.memory import SessionABC, SessionSettings, SQLiteSession
from agents.memory.session import _CompactionSnapshot
from agents.memory.session_settings import coerce_session_settings, resolve_session_limit
from agents.memory.sqlite_session import _await_mutation  # the SDK's own: mutations outlive cancellation

from .durations import ttl_from
from .errors import InvalidSessionId, InvalidSessionItem
from .journal import ACTIVE
from .store import Store
from .store.adapt import decode_json
from .store.default import store_or_default

# An expired session reads as empty; a write to one first deletes it (and, by cascade, its
# items), so the write starts a fresh session rather than bringing old items back.
_EXPIRED = "SELECT session_id FROM session_ttl WHERE expires_at <= now()"
_DROP_IF_EXPIRED = f"DELETE FROM agent_sessions WHERE session_id IN ({_EXPIRED} AND session_id = $1)"
# The upsert locks the session row before any message id is drawn (the insert's rows come
# from joining its result), so concurrent writers to one session take turns and each call's
# items get contiguous ids.
_UPSERT_SESSION = """
    INSERT INTO agent_sessions (session_id) VALUES ($1)
    ON CONFLICT (session_id) DO UPDATE SET updated_at = now()
    RETURNING session_id
"""
# A durable run's row (its run_states id {state}), while its owner {owner} holds it: a write of
# the run's turn is made only then (timestep/journal.py), under a share lock of the row that
# lasts to the write's commit, so a claim by another process waits for the write and then
# finds the run no longer this owner's.
HELD_RUN = (
    "SELECT s.run_id FROM run_states s "
    "WHERE s.id = {state} AND s.active AND s.status = 'running' AND s.lease_owner = {owner} FOR SHARE"
)
# _UPSERT_SESSION, for a durable run's write: only while the run is held (a CTE `held`).
UPSERT_SESSION_HELD = """
    INSERT INTO agent_sessions (session_id) SELECT $1 FROM held
    ON CONFLICT (session_id) DO UPDATE SET updated_at = now()
    RETURNING session_id
"""
# A write moves the expiry on: by {ttl} (this object's ttl) when it has one, else by the ttl
# the session was created with. Runs beside the upsert, in the same statement ({only_if}: a
# further condition, for a durable run's write).
_REFRESH_TTL = """
    ttl_set AS (
        INSERT INTO session_ttl (session_id, ttl, expires_at)
        SELECT $1, {ttl}::interval, now() + {ttl}::interval WHERE {ttl}::interval IS NOT NULL {only_if}
        ON CONFLICT (session_id) DO UPDATE SET ttl = excluded.ttl, expires_at = excluded.expires_at
    ),
    ttl_kept AS (
        UPDATE session_ttl SET expires_at = now() + ttl WHERE session_id = $1 AND {ttl}::interval IS NULL {only_if}
    )
"""
# One statement (one round trip): an expired session's old items go first (their delete sees
# the rows as they were before this statement).
_ADD_ITEMS = f"""
    WITH expired AS (
        DELETE FROM agent_messages WHERE session_id = $1 AND session_id IN ({_EXPIRED})
    ),
    session AS ({_UPSERT_SESSION}),
    {_REFRESH_TTL.format(ttl="$3", only_if="")}
    INSERT INTO agent_messages (session_id, message_data)
    SELECT session.session_id, items.item
    FROM session, json_array_elements($2::json) WITH ORDINALITY AS items (item, n)
    ORDER BY items.n
"""
# A durable run's session write (timestep.journal): the same, fenced by the run's lease, and
# journaled by the same statement with the ids of the items it added ($4 the run's row, $5
# its owner, $6 the write's number, $7 the journal's sequence). Nothing is added, and false
# returned, once the run is not this owner's: the session is not touched either.
_ADD_ITEMS_JOURNALED = f"""
    WITH held AS ({HELD_RUN.format(state="$4", owner="$5")}),
    expired AS (
        DELETE FROM agent_messages WHERE session_id = $1 AND session_id IN ({_EXPIRED}) AND EXISTS (SELECT 1 FROM held)
    ),
    session AS ({UPSERT_SESSION_HELD}),
    {_REFRESH_TTL.format(ttl="$3", only_if="AND EXISTS (SELECT 1 FROM held)")},
    added AS (
        INSERT INTO agent_messages (session_id, message_data)
        SELECT session.session_id, items.item
        FROM session, held, json_array_elements($2::json) WITH ORDINALITY AS items (item, n)
        ORDER BY items.n
        RETURNING id
    ),
    journaled AS (
        INSERT INTO run_steps (run_id, state_id, kind, turn, seq, payload)
        SELECT held.run_id, $4, 'session', $6, $7,
               json_build_object('session_id', $1::text, 'ids', (SELECT json_agg(id) FROM added))
        FROM held
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM journaled)
"""
# Appended to reads of one session ($1): nothing of it is visible once it has expired. A
# scalar subquery, so PostgreSQL evaluates it once per statement, not once per row.
LIVE = "coalesce((SELECT expires_at > now() FROM session_ttl WHERE session_id = $1), true)"


def items_array(ordered_items: str) -> str:
    """A query for the text of one JSON array of the `message_data` a query selects, in its
    order: one value to send and parse instead of a row per item (half the time for 1,000
    items on PGlite). Joining each item's text costs PostgreSQL about a third less than
    `json_agg`; an aggregate reads a sorted subquery in its order."""
    return f"""
    SELECT '[' || coalesce(string_agg(items.message_data::text, ','), '') || ']' FROM ({ordered_items}) AS items
    """


def parse_items(text: str) -> list[TResponseInputItem]:
    """The items of an `items_array` query's result."""
    return decode_json(text)  # type: ignore[no-any-return]


_ALL_ITEMS = items_array(f"SELECT message_data FROM agent_messages WHERE session_id = $1 AND {LIVE} ORDER BY id")
_LATEST_ITEMS = items_array(
    f"""SELECT message_data FROM (
        SELECT id, message_data FROM agent_messages WHERE session_id = $1 AND {LIVE} ORDER BY id DESC LIMIT $2
    ) AS latest ORDER BY id"""
)
_POP_ITEM = f"""
    DELETE FROM agent_messages WHERE id = (
        SELECT id FROM agent_messages WHERE session_id = $1 AND {LIVE}
        ORDER BY id DESC LIMIT 1 FOR UPDATE SKIP LOCKED
    )
    RETURNING message_data
"""
# A pop that checks the item first (_pop_item_with_validation): the newest item is read, checked,
# and deleted only if it is still the newest, so a check that fails deletes nothing.
_NEWEST_ITEM = f"""
    SELECT id, message_data FROM agent_messages WHERE session_id = $1 AND {LIVE} ORDER BY id DESC LIMIT 1
"""
_DELETE_IF_NEWEST = """
    DELETE FROM agent_messages WHERE id = $2 AND id = (
        SELECT max(id) FROM agent_messages WHERE session_id = $1
    )
"""
# Compaction (_get_compaction_snapshot): the newest $2 items with their ids, oldest first after
# reversing; the items before a window, to find an expired prefix; and the replacement of the
# window's suffix, done only if the session's newest rows are still the ones read ($2: their
# ids, comma-separated). The session row's lock (a statement of its own, so the check's snapshot comes after
# it) makes writers wait; FOR UPDATE makes a concurrent pop's delete visible to the check. Its
# one row says the suffix was replaced (a batch reports each statement's row count).
_NEWEST_ROWS = f"""
    SELECT id, message_data FROM agent_messages WHERE session_id = $1 AND {LIVE} ORDER BY id DESC LIMIT $2
"""
_ROWS_BETWEEN = """
    SELECT id, message_data FROM agent_messages WHERE session_id = $1 AND id > $2 AND id < $3 ORDER BY id LIMIT $4
"""
_LOCK_SESSION = "SELECT 1 FROM agent_sessions WHERE session_id = $1 FOR UPDATE"
_REPLACE_SUFFIX = """
    WITH expected AS (SELECT string_to_array($2, ',')::bigint[] AS ids),
    newest AS (
        SELECT id FROM agent_messages WHERE session_id = $1
        ORDER BY id DESC LIMIT (SELECT cardinality(ids) FROM expected)
        FOR UPDATE
    ),
    unchanged AS (SELECT coalesce(array_agg(id ORDER BY id), '{}') = (SELECT ids FROM expected) AS yes FROM newest),
    pruned AS (
        DELETE FROM agent_messages WHERE session_id = $1 AND id <= $3 AND (SELECT yes FROM unchanged)
    ),
    replaced AS (
        DELETE FROM agent_messages WHERE session_id = $1 AND id >= (SELECT ids[1] FROM expected) AND (SELECT yes FROM unchanged)
    ),
    inserted AS (
        INSERT INTO agent_messages (session_id, message_data)
        SELECT $1, items.item FROM json_array_elements($4::json) WITH ORDINALITY AS items (item, n)
        WHERE (SELECT yes FROM unchanged)
        ORDER BY items.n
    )
    SELECT 1 FROM unchanged WHERE yes
"""
_DELETE_SESSION = [  # messages first, then the session: as the SDK's SQLiteSession does
    "DELETE FROM agent_messages WHERE session_id = $1",
    "DELETE FROM agent_sessions WHERE session_id = $1",
]
_LIST_SESSIONS = """
    SELECT s.session_id,
           (SELECT count(*) FROM agent_messages m WHERE m.session_id = s.session_id) AS items,
           s.created_at,
           s.updated_at AS last_active,
           t.expires_at
    FROM agent_sessions s LEFT JOIN session_ttl t ON t.session_id = s.session_id
    WHERE t.expires_at IS NULL OR t.expires_at > now()
    ORDER BY s.updated_at DESC, s.session_id
    LIMIT $1
"""
_PURGE_EXPIRED = f"DELETE FROM agent_sessions WHERE session_id IN ({_EXPIRED})"  # items, structure, usage cascade


@dataclass(frozen=True)
class SessionInfo:
    """One stored session, as `Session.list_sessions` reports it."""

    session_id: str
    items: int
    created_at: dt.datetime
    last_active: dt.datetime
    expires_at: dt.datetime | None  # None: no time to live


class Session(SessionABC):
    """Conversation history of one session, for `Runner.run(..., session=...)`.

    `session_id` defaults to a new uuid; `store` defaults to the process-wide store
    (PG_CONNECTION_URI's PostgreSQL, else embedded PGlite), opened on first use. With `ttl`
    (seconds or a timedelta) the session expires that long after its last write: it then reads
    as empty, and `Session.purge_expired()` deletes it.
    """

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        session_id: str | None = None,
        *,
        store: Store | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        ttl: float | dt.timedelta | None = None,
    ) -> None:
        if session_id is not None:
            check_session_id(session_id)
        self.ttl = ttl_from(ttl)
        self.session_id = session_id if session_id is not None else str(uuid.uuid4())
        self.session_settings = (
            coerce_session_settings(session_settings) if session_settings is not None else SessionSettings()
        )
        self._store = store

    async def store(self) -> Store:
        """The store this session lives in."""
        return await store_or_default(self._store)

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The latest `limit` items (else `session_settings.limit`, else all), oldest first."""
        limit = resolve_session_limit(limit, self.session_settings)
        store = await self.store()
        if limit is None or limit < 0:  # negative: all, as SQLiteSession does
            items = await store.fetchval(_ALL_ITEMS, self.session_id)
        elif limit == 0:
            return []
        else:
            items = await store.fetchval(_LATEST_ITEMS, self.session_id, limit)
        return parse_items(items)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append items, atomically and in one round trip, however many there are."""
        if not items:
            return
        payload = _items_json(items)
        store = await self.store()
        journal = ACTIVE.get()
        if journal is not None and journal.journals_session(self):  # a durable run's turn
            params = journal.session_write_params()
            journaled = await _await_mutation(store.fetchval(_ADD_ITEMS_JOURNALED, self.session_id, payload, self.ttl, *params))
            journal.session_written(journaled)
            return
        await _await_mutation(store.execute(_ADD_ITEMS, self.session_id, payload, self.ttl))

    # SQLiteSession's own pop_item, which calls _pop_item_with_validation: the SDK's
    # EncryptedSession authenticates an item before its removal only for a SQLiteSession whose
    # pop_item is that one (Session is registered as one, below), so that a wrong key deletes
    # nothing. Removes and returns the newest item, atomically; None when the session is empty.
    pop_item = SQLiteSession.pop_item

    async def _pop_item_with_validation(
        self, validate: Callable[[TResponseInputItem], None] | None = None
    ) -> TResponseInputItem | None:
        """Remove and return the newest item; with `validate`, only once it has accepted the
        item (run in a worker thread): if it raises, the item stays where it was."""
        store = await self.store()
        if validate is None:
            row = await _await_mutation(store.fetchrow(_POP_ITEM, self.session_id))
            return None if row is None else row["message_data"]
        return await _await_mutation(self._pop_validated(store, validate))  # type: ignore[no-any-return]

    async def _pop_validated(self, store: Store, validate: Callable[[TResponseInputItem], None]) -> TResponseInputItem | None:
        while True:
            row = await store.fetchrow(_NEWEST_ITEM, self.session_id)
            if row is None:
                return None
            item: TResponseInputItem = row["message_data"]
            await asyncio.to_thread(validate, item)
            if await store.execute(_DELETE_IF_NEWEST, self.session_id, row["id"]):
                return item
            # Another writer added or removed an item meanwhile: check the newest again.

    async def _get_compaction_snapshot(
        self, limit: int, *, prune_prefix: Callable[[TResponseInputItem], bool] | None = None
    ) -> _CompactionSnapshot | None:
        """The SDK's hook for compaction (OpenAIResponsesCompactionSession): the newest `limit`
        items, whether they are the whole history, and an atomic replacement of their suffix
        that fails if the session changed meanwhile. As in SQLiteSession, a subclass that reads or
        writes items its own way gets None: compaction then goes through its get_items."""
        if any(getattr(type(self), name) is not getattr(Session, name) for name in ("get_items", "add_items")):
            return None
        store = await self.store()
        rows = (await store.fetch(_NEWEST_ROWS, self.session_id, limit + 1))[::-1]
        complete = len(rows) <= limit
        rows = rows[max(len(rows) - limit, 0) :] if limit > 0 else []
        items = [row["message_data"] for row in rows]

        async def replace_suffix(start: int, output: list[TResponseInputItem]) -> bool:
            expected = [row["id"] for row in rows[start:]]
            if not expected:
                return False
            expired_end = await self._expired_prefix_end(store, expected[0], limit, prune_prefix)
            statements = [
                (_LOCK_SESSION, [self.session_id]),
                (_REPLACE_SUFFIX, [self.session_id, ",".join(map(str, expected)), expired_end, _items_json(output)]),
            ]
            replaced = await _await_mutation(store.execute_batch(statements))
            return replaced[1] == 1

        return _CompactionSnapshot(items, complete, replace_suffix)

    async def _expired_prefix_end(
        self, store: Store, before: int, limit: int, expired: Callable[[TResponseInputItem], bool] | None
    ) -> int | None:
        """The id of the last item of the run of expired items that starts the history before
        item `before` (None if it does not start with one), read `limit` at a time, as
        SQLiteSession prunes it. Items are only ever appended after these: the ids stay valid."""
        if expired is None:
            return None
        end = None
        page = max(limit, 1)
        while True:
            rows = await store.fetch(_ROWS_BETWEEN, self.session_id, end if end is not None else 0, before, page)
            for row in rows:
                if not expired(row["message_data"]):
                    return end
                end = row["id"]
            if len(rows) < page:
                return end

    async def clear_session(self) -> None:
        """Delete every item of this session, and the session itself."""
        store = await self.store()
        await _await_mutation(store.execute_batch([(sql, [self.session_id]) for sql in _DELETE_SESSION]))

    @staticmethod
    async def list_sessions(store: Store | None = None, *, limit: int | None = None) -> list[SessionInfo]:
        """Stored sessions with their item counts, most recently active first."""
        store = await store_or_default(store)
        rows = await store.fetch(_LIST_SESSIONS, limit)
        return [SessionInfo(**row) for row in rows]

    @staticmethod
    async def purge_expired(store: Store | None = None) -> int:
        """Delete every expired session with its items; return how many. Unexpired sessions
        (and sessions without a ttl) are not touched."""
        store = await store_or_default(store)
        return await store.execute(_PURGE_EXPIRED)

    @staticmethod
    async def delete_session(session_id: str, store: Store | None = None) -> bool:
        """Delete a session and its items; False if there was no such session."""
        store = await store_or_default(store)
        deleted = await store.execute_batch([(sql, [session_id]) for sql in _DELETE_SESSION])
        return deleted[1] > 0

    def close(self) -> None:
        """As `SQLiteSession.close()`: release what the session itself holds. A Session holds
        no connection of its own (its store does, shared), so there is nothing to release, and
        the session can still be used."""

    def __repr__(self) -> str:
        where = self._store.location if self._store is not None else "the default store"
        return f"<Session {self.session_id!r} in {where}>"


# The SDK's EncryptedSession takes its safe pop only for a SQLiteSession (see Session.pop_item).
SQLiteSession.register(Session)

# Session ids are index keys: PostgreSQL's btree entries hold at most ~2.7 KB.
MAX_SESSION_ID_BYTES = 1024


def check_session_id(session_id: Any) -> None:
    """A session id is text of at most MAX_SESSION_ID_BYTES in UTF-8; refused before any SQL."""
    if not isinstance(session_id, str):
        raise TypeError(f"session_id must be a str, not {type(session_id).__name__}")
    size = len(session_id.encode("utf-8", "surrogatepass"))
    if size > MAX_SESSION_ID_BYTES:
        raise InvalidSessionId(
            f"a session id may be at most {MAX_SESSION_ID_BYTES} bytes of UTF-8, not {size:,}; "
            "use a shorter id (a uuid, or a hash of a long key)"
        )


def _items_json(items: list[TResponseInputItem]) -> str:
    """The items as one JSON array, or a clear error naming the item that cannot be stored."""
    try:
        payload = json.dumps(items, allow_nan=False)
    except RecursionError as exc:
        raise InvalidSessionItem(
            "a session item is nested too deeply to be stored as JSON (about 1,000 levels or more). "
            "Nothing was written."
        ) from exc
    except (TypeError, ValueError) as exc:
        index = _first_bad_item(items)
        raise InvalidSessionItem(
            f"session item {index} cannot be stored as JSON ({exc}); session items must be "
            "JSON-serializable dicts (NaN and infinity are not JSON). Nothing was written."
        ) from exc
    if "\\u0000" in payload:
        raise InvalidSessionItem(
            "a session item contains a NUL character (\\u0000), which PostgreSQL's JSON functions "
            "cannot handle; strip it. Nothing was written."
        )
    return payload


def _first_bad_item(items: list[TResponseInputItem]) -> int:
    for index, item in enumerate(items):
        try:
            json.dumps(item, allow_nan=False)
        except (TypeError, ValueError):
            return index
    return -1
