"""`AdvancedSession`: the SDK's `AdvancedSQLiteSession` (branches, turns, usage) on PGlite and
PostgreSQL.

Same method names, arguments, results and errors as
`agents.extensions.memory.AdvancedSQLiteSession` (openai-agents 0.24), so switching is a
one-line change. The tables are its tables in PostgreSQL types (`message_structure`,
`turn_usage`, `branch_reservations`, migration 5; structure rows keyed by session, branch and
sequence number since migration 8, numbered per branch since migration 10); messages are the
plain `Session`'s `agent_messages`, shared by every branch that holds them. Each operation is
one statement or one atomic batch; writers of one session take turns on its `agent_sessions`
row.

The current branch is a property of this object, as in the SDK: another object on the same
session starts on "main", and once any object clears the session, this one is back on "main"
at its next call.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from typing import Any

from agents import _debug
from agents._tool_identity import is_reserved_synthetic_tool_namespace, tool_qualified_name
from agents.items import TResponseInputItem
from agents.logger import log_model_action_error
from agents.memory import SessionSettings
from agents.memory.session_settings import resolve_session_limit
from agents.memory.sqlite_session import _await_mutation
from agents.result import RunResult
from agents.usage import Usage

from .errors import DatabaseError, InvalidBranch
from .journal import ACTIVE
from .session import (
    _DELETE_SESSION,
    _DROP_IF_EXPIRED,
    _EXPIRED,
    _LOCK_SESSION,
    _REFRESH_TTL,
    _UPSERT_SESSION,
    HELD_RUN,
    LIVE,
    UPSERT_SESSION_HELD,
    Session,
    _items_json,
    items_array,
    parse_items,
)
from .store import Store

MAIN = "main"
# SQLite's CURRENT_TIMESTAMP text (UTC), which AdvancedSQLiteSession returns for timestamps.
_SQLITE_TIME = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')"

# The batch's second statement: lock the session row (upsert) and move its expiry on.
_LOCK_AND_REFRESH = f"WITH {_REFRESH_TTL.format(ttl='$2', only_if='')}, session AS ({_UPSERT_SESSION}) SELECT 1"
# Messages and their structure rows in one statement, after the batch's upsert has locked the
# session row (so this statement's snapshot sees every earlier writer's rows). The items go to
# branch $4, or to "main" if the session is not the one ($5: its created_at) that branch was
# taken in: a clear in between deleted the branch, which must not come back. $3 is one
# {"type", "tool", "users"} per item: its message type, tool name, and how many user messages
# the batch has up to and including it (its turn offset).
_ADD_ITEMS_SQL = """
    WITH {held}items AS (
        SELECT i.n, i.item, m.meta
        FROM json_array_elements($2::json) WITH ORDINALITY AS i (item, n)
        JOIN json_array_elements($3::json) WITH ORDINALITY AS m (meta, n) USING (n)
    ),
    inserted AS (
        INSERT INTO agent_messages (session_id, message_data)
        SELECT $1, items.item FROM items{and_held} ORDER BY items.n
        RETURNING id
    ),
    numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM inserted),
    target AS (
        SELECT CASE WHEN $4 = 'main' OR created_at = $5 THEN $4 ELSE 'main' END AS branch_id
        FROM agent_sessions WHERE session_id = $1
    ),
    branch AS (
        SELECT coalesce(max(sequence_number), 0) AS seq, coalesce(max(user_turn_number), 0) AS turn,
               coalesce(max(branch_turn_number), 0) AS branch_turn
        FROM message_structure WHERE session_id = $1 AND branch_id = (SELECT branch_id FROM target)
    ){journaled}
    INSERT INTO message_structure
        (session_id, message_id, branch_id, message_type, sequence_number, user_turn_number, branch_turn_number, tool_name)
    SELECT $1, numbered.id, (SELECT branch_id FROM target), items.meta->>'type', branch.seq + items.n,
           branch.turn + (items.meta->>'users')::int, branch.branch_turn + (items.meta->>'users')::int, items.meta->>'tool'
    FROM items JOIN numbered USING (n), branch
"""
_ADD_ITEMS = _ADD_ITEMS_SQL.format(held="", and_held="", journaled="")
# A durable run's turn (timestep/journal.py): the same batch, each statement only while the
# run's row is held by its owner, under a share lock the first statement takes and the batch
# holds to its commit. The last statement also journals the ids it added ($6 the run's row, $7
# its owner, $8 the write's number, $9 the journal's sequence), with the branch they went to.
_DROP_IF_EXPIRED_HELD = (
    f"WITH held AS ({HELD_RUN.format(state='$2', owner='$3')}) "
    f"DELETE FROM agent_sessions WHERE session_id IN ({_EXPIRED} AND session_id = $1) AND EXISTS (SELECT 1 FROM held)"
)
_LOCK_AND_REFRESH_HELD = (
    f"WITH held AS ({HELD_RUN.format(state='$3', owner='$4')}), "
    f"{_REFRESH_TTL.format(ttl='$2', only_if='AND EXISTS (SELECT 1 FROM held)')}, session AS ({UPSERT_SESSION_HELD}) SELECT 1"
)
_ADD_ITEMS_JOURNALED = _ADD_ITEMS_SQL.format(
    held=f"held AS ({HELD_RUN.format(state='$6', owner='$7')}),\n    ",
    and_held=", held",
    journaled=""",
    journaled AS (
        INSERT INTO run_steps (run_id, state_id, kind, turn, seq, payload)
        SELECT held.run_id, $6, 'session', $8, $9, json_build_object(
            'session_id', $1::text, 'ids', (SELECT json_agg(id) FROM inserted), 'branch', (SELECT branch_id FROM target))
        FROM held
    )""",
)
# As Session's reads: the items as one JSON array.
_BRANCH_ITEMS = items_array(
    f"""SELECT m.message_data
    FROM message_structure s JOIN agent_messages m ON m.id = s.message_id
    WHERE s.session_id = $1 AND s.branch_id = $2 AND {LIVE}
    ORDER BY s.sequence_number"""
)
_LATEST_BRANCH_ITEMS = items_array(
    f"""SELECT message_data FROM (
        SELECT s.sequence_number, m.message_data
        FROM message_structure s JOIN agent_messages m ON m.id = s.message_id
        WHERE s.session_id = $1 AND s.branch_id = $2 AND {LIVE}
        ORDER BY s.sequence_number DESC LIMIT $3
    ) AS latest ORDER BY sequence_number"""
)
# The newest row of the branch goes; its message too unless another branch holds it; and the
# turn's usage if that was the turn's last row. One statement, so all or nothing.
_POP_ITEM = f"""
    WITH claimed AS (
        DELETE FROM message_structure WHERE session_id = $1 AND branch_id = $2 AND sequence_number = (
            SELECT sequence_number FROM message_structure
            WHERE session_id = $1 AND branch_id = $2 AND {LIVE}
            ORDER BY sequence_number DESC LIMIT 1 FOR UPDATE SKIP LOCKED
        )
        RETURNING sequence_number, message_id, user_turn_number
    ),
    popped AS (SELECT m.message_data FROM agent_messages m JOIN claimed c ON m.id = c.message_id),
    dropped_message AS (
        DELETE FROM agent_messages m USING claimed c
        WHERE m.id = c.message_id
          AND NOT EXISTS (
              SELECT 1 FROM message_structure s
              WHERE s.message_id = c.message_id AND (s.branch_id, s.sequence_number) <> ($2, c.sequence_number)
          )
    ),
    dropped_usage AS (
        DELETE FROM turn_usage u USING claimed c
        WHERE u.session_id = $1 AND u.branch_id = $2 AND u.user_turn_number = c.user_turn_number
          AND NOT EXISTS (
              SELECT 1 FROM message_structure s
              WHERE s.session_id = $1 AND s.branch_id = $2 AND s.user_turn_number = c.user_turn_number AND s.sequence_number <> c.sequence_number
          )
    )
    SELECT message_data FROM popped
"""
_BRANCH_EXISTS = "SELECT EXISTS (SELECT 1 FROM message_structure WHERE session_id = $1 AND branch_id = $2)"
# Which session this is: clear_session deletes the session row, and a later write makes a new
# one, so a branch taken in one session is known to be gone once this differs.
_SESSION_BORN = "SELECT created_at FROM agent_sessions WHERE session_id = $1"
_SWITCH_TO = f"SELECT ({_BRANCH_EXISTS}) AS present, ({_SESSION_BORN}) AS born"
# The new branch, the session it was taken in, and the turn's user message (for the log).
_CREATE_BRANCH = f"""
    SELECT timestep_create_branch($1, $2, $3, $4, $5) AS branch, ({_SESSION_BORN}) AS born,
           (SELECT m.message_data FROM message_structure s JOIN agent_messages m ON m.id = s.message_id
            WHERE s.session_id = $1 AND s.branch_id = $2 AND s.branch_turn_number = $3 AND s.message_type = 'user'
            LIMIT 1) AS turn
"""
_RESERVE_EXISTING = """
    INSERT INTO branch_reservations (session_id, branch_id)
    SELECT DISTINCT session_id, branch_id FROM message_structure WHERE session_id = $1
    ON CONFLICT DO NOTHING
"""
_DELETE_BRANCH = [
    _LOCK_SESSION,
    _RESERVE_EXISTING,  # the id stays used after the branch is gone
    "DELETE FROM turn_usage WHERE session_id = $1 AND branch_id = $2",
    "DELETE FROM message_structure WHERE session_id = $1 AND branch_id = $2",
    """DELETE FROM agent_messages m WHERE m.session_id = $1
       AND NOT EXISTS (SELECT 1 FROM message_structure s WHERE s.message_id = m.id)""",
]
_LIST_BRANCHES = f"""
    SELECT branch_id, count(*) AS message_count,
           count(*) FILTER (WHERE message_type = 'user') AS user_turns,
           {_SQLITE_TIME.format("min(created_at)")} AS created_at
    FROM message_structure WHERE session_id = $1
    GROUP BY branch_id
    ORDER BY date_trunc('second', min(created_at)), branch_id  -- SQLite's order: seconds, then branch id
"""
_USER_TURNS = f"""
    SELECT s.branch_turn_number AS turn, m.message_data, {_SQLITE_TIME.format("s.created_at")} AS timestamp
    FROM message_structure s JOIN agent_messages m ON m.id = s.message_id
    WHERE s.session_id = $1 AND s.branch_id = $2 AND s.message_type = 'user' AND {LIVE} {{containing}}
    ORDER BY s.branch_turn_number, s.sequence_number
"""
# A superset of a search's matches (Unicode lower() is looser than the ASCII-only case folding
# find_turns_by_content applies after).
_USER_TURNS_CONTAINING = _USER_TURNS.format(containing="AND strpos(lower(m.message_data::text), lower($3)) > 0")
_USER_TURNS = _USER_TURNS.format(containing="")
_TURN_STRUCTURE = """
    SELECT user_turn_number, message_type, tool_name FROM message_structure
    WHERE session_id = $1 AND branch_id = $2 ORDER BY sequence_number
"""
_TOOL_USAGE = """
    SELECT tool_name, sum(usage_count)::int AS uses, user_turn_number
    FROM (
        SELECT coalesce(tool_name, CASE WHEN message_type IN ('shell_call', 'apply_patch_call') THEN message_type END)
                   AS tool_name,
               1 AS usage_count, user_turn_number
        FROM message_structure
        WHERE session_id = $1 AND branch_id = $2 AND message_type IN (
            'tool_call', 'function_call', 'computer_call', 'file_search_call', 'web_search_call',
            'code_interpreter_call', 'tool_search_call', 'custom_tool_call', 'mcp_call',
            'mcp_approval_request', 'shell_call', 'apply_patch_call'
        )
        UNION ALL
        SELECT ms.tool_name, 1, ms.user_turn_number
        FROM message_structure ms
        WHERE ms.session_id = $1 AND ms.branch_id = $2 AND ms.message_type = 'tool_search_output'
          AND NOT EXISTS (
              SELECT 1 FROM message_structure calls
              WHERE calls.session_id = ms.session_id AND calls.branch_id = ms.branch_id
                AND calls.user_turn_number = ms.user_turn_number AND calls.tool_name = ms.tool_name
                AND calls.message_type = 'tool_search_call'
          )
    ) AS uses
    GROUP BY tool_name, user_turn_number
    ORDER BY user_turn_number, tool_name
"""
_STORE_USAGE = """
    INSERT INTO turn_usage (session_id, branch_id, user_turn_number, requests, input_tokens, output_tokens,
                            total_tokens, input_tokens_details, output_tokens_details)
    SELECT $1, $2, turn, $3, $4, $5, $6, $7, $8
    FROM (SELECT max(user_turn_number) AS turn FROM message_structure WHERE session_id = $1 AND branch_id = $2) AS current
    WHERE turn IS NOT NULL
    ON CONFLICT (session_id, branch_id, user_turn_number) DO UPDATE
    SET requests = excluded.requests, input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,
        total_tokens = excluded.total_tokens, input_tokens_details = excluded.input_tokens_details,
        output_tokens_details = excluded.output_tokens_details, created_at = now()
"""
_SESSION_USAGE = """
    SELECT sum(requests)::int AS requests, sum(input_tokens)::int AS input_tokens,
           sum(output_tokens)::int AS output_tokens, sum(total_tokens)::int AS total_tokens,
           count(*)::int AS total_turns
    FROM turn_usage WHERE session_id = $1 AND ($2::text IS NULL OR branch_id = $2)
"""
_TURN_USAGE = """
    SELECT user_turn_number, requests, input_tokens, output_tokens, total_tokens,
           input_tokens_details, output_tokens_details
    FROM turn_usage WHERE session_id = $1 AND branch_id = $2 AND ($3::int IS NULL OR user_turn_number = $3)
    ORDER BY user_turn_number
"""
# Characters an item's stored text may hold escaped (json.dumps escapes quotes, backslashes,
# control characters and everything beyond ASCII): a search term holding one cannot be
# pre-filtered in SQL.
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f\x7f-\U0010ffff]')


class AdvancedSession(Session):
    """A `Session` with conversation branches, turn structure and usage analytics.

    `create_tables` is accepted for compatibility with `AdvancedSQLiteSession` and ignored:
    timestep's migrations create the tables when the store opens.
    """

    def __init__(
        self,
        session_id: str | None = None,
        *,
        store: Store | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        ttl: float | dt.timedelta | None = None,
        create_tables: bool = True,
        logger: logging.Logger | None = None,
    ) -> None:
        super().__init__(session_id, store=store, session_settings=session_settings, ttl=ttl)
        self._current_branch_id = MAIN
        # The session (its created_at) in which this object left "main" (see _SESSION_BORN).
        self._branch_session: dt.datetime | None = None
        self._logger = logger if logger is not None else logging.getLogger(__name__)

    @property
    def current_branch_id(self) -> str:
        """The branch this object reads and writes by default."""
        return self._current_branch_id

    async def _current_branch(self, store: Store) -> str:
        """The current branch; back to "main" if the session was cleared (by any object)
        since this one left it, as AdvancedSQLiteSession does."""
        if self._current_branch_id == MAIN:
            return MAIN
        return self._branch_in(await store.fetchval(_SESSION_BORN, self.session_id))

    def _branch_in(self, born: dt.datetime | None) -> str:
        """The current branch, the session's created_at being `born` now (see _SESSION_BORN)."""
        if self._current_branch_id != MAIN and born != self._branch_session:
            self._current_branch_id = MAIN
        return self._current_branch_id

    async def _branch(self, store: Store, branch_id: str | None) -> str:
        """The branch a read names, else the current one."""
        return branch_id if branch_id is not None else await self._current_branch(store)

    # The session protocol, on the current branch

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append items to the current branch, with their turn structure, atomically."""
        if not items:
            return
        payload = _items_json(items)
        meta = []
        users = 0
        for item in items:
            if _is_user_message(item):
                users += 1
            meta.append({"type": _message_type(item), "tool": _tool_name(item), "users": users})
        store = await self.store()
        branch = await self._current_branch(store)
        add = [self.session_id, payload, json.dumps(meta), branch, self._branch_session]
        journal = ACTIVE.get()
        if journal is not None and journal.journals_session(self):  # a durable run's turn
            params = journal.session_write_params()
            held = params[:2]  # the run's row and its owner
            affected = await _await_mutation(
                store.execute_batch(
                    [
                        (_DROP_IF_EXPIRED_HELD, [self.session_id, *held]),
                        (_LOCK_AND_REFRESH_HELD, [self.session_id, self.ttl, *held]),
                        (_ADD_ITEMS_JOURNALED, [*add, *params]),
                    ]
                )
            )
            journal.session_written(affected[-1] > 0)
            return
        await _await_mutation(
            store.execute_batch(
                [
                    (_DROP_IF_EXPIRED, [self.session_id]),
                    (_LOCK_AND_REFRESH, [self.session_id, self.ttl]),
                    (_ADD_ITEMS, add),
                ]
            )
        )

    async def get_items(self, limit: int | None = None, branch_id: str | None = None) -> list[TResponseInputItem]:
        """The latest `limit` items of a branch (default: the current one), oldest first."""
        limit = resolve_session_limit(limit, self.session_settings)
        store = await self.store()
        branch = await self._branch(store, branch_id)
        if limit is None or limit < 0:
            items = await store.fetchval(_BRANCH_ITEMS, self.session_id, branch)
        elif limit == 0:
            return []
        else:
            items = await store.fetchval(_LATEST_BRANCH_ITEMS, self.session_id, branch, limit)
        return parse_items(items)

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item of the current branch (other branches keep it)."""
        store = await self.store()
        branch = await self._current_branch(store)
        row = await _await_mutation(store.fetchrow(_POP_ITEM, self.session_id, branch))
        return None if row is None else row["message_data"]

    async def clear_session(self) -> None:
        """Delete every branch, item and usage record of this session; back to "main".
        Branch ids used before stay used."""
        store = await self.store()
        statements = [_RESERVE_EXISTING, *_DELETE_SESSION]  # structure goes with its messages (a trigger), usage by cascade
        await _await_mutation(store.execute_batch([(sql, [self.session_id]) for sql in statements]))
        self._current_branch_id = MAIN

    # Branches

    async def create_branch_from_turn(self, turn_number: int, branch_name: str | None = None) -> str:
        """Create a branch holding the turns before `turn_number` (a user turn of the current
        branch) and switch to it; return its id. Raises ValueError (`InvalidBranch`) if the
        turn has no user message or the name was used before; nothing changes then."""
        if branch_name is not None and not branch_name.strip():
            raise InvalidBranch("Branch name cannot be empty")
        store = await self.store()
        source = await self._current_branch(store)
        try:
            row = await _await_mutation(
                store.fetchrow(_CREATE_BRANCH, self.session_id, source, turn_number, branch_name, int(time.time()))
            )
        except DatabaseError as exc:
            if exc.sqlstate in ("P0002", "23505"):
                raise InvalidBranch(exc.message) from None
            raise
        assert row is not None
        branch: str = row["branch"]
        self._current_branch_id, self._branch_session = branch, row["born"]
        if _debug.DONT_LOG_MODEL_DATA:
            self._logger.debug("Created branch '%s' from turn %s in '%s'", branch, turn_number, source)
        else:
            self._logger.debug(
                "Created branch '%s' from turn %s ('%s') in '%s'", branch, turn_number, _preview(row["turn"]), source
            )
        return branch

    async def create_branch_from_content(self, search_term: str, branch_name: str | None = None) -> str:
        """Create a branch from the first user turn containing `search_term` (see
        `create_branch_from_turn`)."""
        matches = await self.find_turns_by_content(search_term)
        if not matches:
            raise InvalidBranch(f"No user turns found containing '{search_term}'")
        return await self.create_branch_from_turn(matches[0]["turn"], branch_name)

    async def switch_to_branch(self, branch_id: str) -> None:
        """Make `branch_id` the current branch; ValueError (`InvalidBranch`) if it has no items."""
        store = await self.store()
        found = await store.fetchrow(_SWITCH_TO, self.session_id, branch_id)
        assert found is not None
        if not found["present"]:
            raise InvalidBranch(f"Branch '{branch_id}' does not exist")
        old = self._branch_in(found["born"])
        self._current_branch_id, self._branch_session = branch_id, found["born"]
        self._logger.info("Switched from branch '%s' to '%s'", old, branch_id)

    async def delete_branch(self, branch_id: str, force: bool = False) -> None:
        """Delete a branch, its usage, and the messages no other branch holds, atomically. Its
        id stays used. Not "main"; the current branch only with `force` (then back to "main")."""
        if not branch_id or not branch_id.strip():
            raise InvalidBranch("Branch ID cannot be empty")
        if branch_id == MAIN:
            raise InvalidBranch("Cannot delete the 'main' branch")
        store = await self.store()
        if branch_id == await self._current_branch(store):
            if not force:
                raise InvalidBranch(
                    f"Cannot delete current branch '{branch_id}'. Use force=True or switch branches first"
                )
            if not await store.fetchval(_BRANCH_EXISTS, self.session_id, branch_id):
                raise InvalidBranch(f"Branch '{branch_id}' does not exist")
            await self.switch_to_branch(MAIN)
        affected = await _await_mutation(
            store.execute_batch(
                [(sql, [self.session_id, branch_id] if "$2" in sql else [self.session_id]) for sql in _DELETE_BRANCH]
            )
        )
        if affected[3] == 0:
            raise InvalidBranch(f"Branch '{branch_id}' does not exist")
        self._logger.info(
            "Deleted branch '%s': %s message entries, %s usage entries, %s orphaned messages",
            branch_id, affected[3], affected[2], affected[4],
        )

    async def list_branches(self) -> list[dict[str, Any]]:
        """Every branch with items: branch_id, message_count, user_turns, is_current, created_at."""
        store = await self.store()
        current = await self._current_branch(store)
        return [
            {**row, "is_current": row["branch_id"] == current}
            for row in await store.fetch(_LIST_BRANCHES, self.session_id)
        ]

    # Turns

    async def get_conversation_turns(self, branch_id: str | None = None) -> list[dict[str, Any]]:
        """The user turns of a branch: turn, content (first 100 characters), full_content,
        timestamp, can_branch."""
        return [_turn(row, 100) for row in await self._user_turns(branch_id)]

    async def find_turns_by_content(self, search_term: str, branch_id: str | None = None) -> list[dict[str, Any]]:
        """The user turns of a branch whose text contains `search_term` (ASCII case-insensitive,
        as SQLite's LIKE), in the format of `get_conversation_turns` (content not truncated)."""
        pattern = re.compile(re.escape(search_term), re.IGNORECASE | re.ASCII)
        prefilter = None if _JSON_ESCAPED.search(search_term) else search_term
        matches = []
        for row in await self._user_turns(branch_id, prefilter):
            content = row["message_data"].get("content", "") if isinstance(row["message_data"], dict) else ""
            texts = [content] if isinstance(content, str) else [part.get("text", "") for part in content if isinstance(part, dict)]
            if any(pattern.search(text) for text in texts):
                matches.append(_turn(row, None))
        return matches

    async def _user_turns(self, branch_id: str | None, contains: str | None = None) -> list[dict[str, Any]]:
        store = await self.store()
        branch = await self._branch(store, branch_id)
        if contains is None:
            return await store.fetch(_USER_TURNS, self.session_id, branch)
        return await store.fetch(_USER_TURNS_CONTAINING, self.session_id, branch, contains)

    async def get_conversation_by_turns(self, branch_id: str | None = None) -> dict[int, list[dict[str, str | None]]]:
        """A branch's items grouped by turn: turn -> [{"type", "tool_name"}, ...]."""
        store = await self.store()
        branch = await self._branch(store, branch_id)
        turns: dict[int, list[dict[str, str | None]]] = {}
        for row in await store.fetch(_TURN_STRUCTURE, self.session_id, branch):
            turns.setdefault(row["user_turn_number"], []).append({"type": row["message_type"], "tool_name": row["tool_name"]})
        return turns

    # Usage

    async def store_run_usage(self, result: RunResult) -> None:
        """Record `result`'s usage against the current turn of the current branch (replacing
        what was recorded for it). Failures are logged, never raised, as in the SDK, and
        under its model-data policy (agents.logger.log_model_action_error)."""
        try:
            usage: Usage | None = result.context_wrapper.usage
            if usage is not None:
                await _await_mutation(self._update_turn_usage_internal(usage))
        except Exception as error:
            log_model_action_error(
                self._logger, "Failed to store session usage", error,
                diagnostic_extra=lambda: {"session_id": self.session_id},
            )

    async def _update_turn_usage_internal(self, usage: Usage) -> None:
        """Write `usage` as the current turn's (AdvancedSQLiteSession's name for this step)."""
        store = await self.store()
        await store.execute(
            _STORE_USAGE,
            self.session_id,
            await self._current_branch(store),
            usage.requests or 0,
            usage.input_tokens or 0,
            usage.output_tokens or 0,
            usage.total_tokens or 0,
            _details(usage.input_tokens_details),
            _details(usage.output_tokens_details),
        )

    async def get_session_usage(self, branch_id: str | None = None) -> dict[str, int] | None:
        """Usage summed over every branch (or one): requests, tokens, total_turns; None if none."""
        store = await self.store()
        row = await store.fetchrow(_SESSION_USAGE, self.session_id, branch_id or None)
        if row is None or row["requests"] is None:
            return None
        return {key: value or 0 for key, value in row.items()}

    async def get_turn_usage(
        self, user_turn_number: int | None = None, branch_id: str | None = None
    ) -> list[dict[str, Any]] | dict[str, Any]:
        """Usage of one turn (a dict, {} if none), or of every turn of a branch (a list)."""
        store = await self.store()
        branch = await self._branch(store, branch_id)
        rows = await store.fetch(_TURN_USAGE, self.session_id, branch, user_turn_number)
        if user_turn_number is not None:
            if not rows:
                return {}
            row = dict(rows[0])
            del row["user_turn_number"]
            return row
        return rows

    async def get_tool_usage(self, branch_id: str | None = None) -> list[tuple[str, int, int]]:
        """(tool_name, calls, turn) for each tool used in each turn of a branch."""
        store = await self.store()
        branch = await self._branch(store, branch_id)
        rows = await store.fetch(_TOOL_USAGE, self.session_id, branch)
        return [(row["tool_name"], row["uses"], row["user_turn_number"]) for row in rows]

    def __repr__(self) -> str:
        where = self._store.location if self._store is not None else "the default store"
        return f"<AdvancedSession {self.session_id!r} branch {self._current_branch_id!r} in {where}>"


# What AdvancedSQLiteSession records of each item, computed the same way.


def _is_user_message(item: Any) -> bool:
    return isinstance(item, dict) and item.get("role") == "user"


def _message_type(item: Any) -> str:
    if isinstance(item, dict):
        if item.get("role") in ("user", "assistant"):
            return str(item["role"])
        if item.get("type"):
            return str(item["type"])
    return "other"


_NAMELESS_TOOL_CALLS = {
    "computer_call", "file_search_call", "web_search_call", "code_interpreter_call", "shell_call", "apply_patch_call",
}


def _tool_name(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    kind = item.get("type")
    if kind in ("mcp_call", "mcp_approval_request") and "server_label" in item:
        label, name = item.get("server_label"), item.get("name")
        if name and label:
            return f"{label}.{name}"
        return str(label) if label else (str(name) if name else None)
    if kind in ("tool_search_call", "tool_search_output"):
        return "tool_search"
    if kind in _NAMELESS_TOOL_CALLS:
        return str(kind)
    if "name" in item:
        name = item.get("name")
        if name is None:
            return None
        namespace = item.get("namespace")
        name_text, namespace_text = str(name), (str(namespace) if namespace is not None else None)
        if is_reserved_synthetic_tool_namespace(name_text, namespace_text):
            return name_text
        return tool_qualified_name(name_text, namespace_text) or name_text
    return None


def _preview(message: Any) -> Any:
    """A user message's content as AdvancedSQLiteSession logs it: its first 50 characters."""
    try:
        content = message.get("content", "")
        return content[:50] + "..." if len(content) > 50 else content
    except Exception:
        return "Unable to parse content"


def _details(details: Any) -> Any:
    """Token details as the SDK stores them (the object's fields), or None."""
    if not details:
        return None
    try:
        return json.loads(json.dumps(details.__dict__))
    except (TypeError, ValueError):
        return None


def _turn(row: dict[str, Any], preview: int | None) -> dict[str, Any]:
    content = row["message_data"].get("content", "") if isinstance(row["message_data"], dict) else ""
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    if preview is not None and len(text) > preview:
        text = text[:preview] + "..."
    return {"turn": row["turn"], "content": text, "full_content": content, "timestamp": row["timestamp"], "can_branch": True}
