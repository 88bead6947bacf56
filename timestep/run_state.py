"""`RunStateStore`: save a paused run, load it later anywhere, resume it.

Each save is a row of `run_states` holding the SDK's own JSON (`RunState.to_json()`, with its
`$schemaVersion`) and the same state converted for the JavaScript SDK (`timestep.crosslang`),
so the run resumes in either language. Earlier saves of a run stay as history; exactly one row
per run is active, and `load()` returns it, converting a state the JavaScript SDK saved.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import agents
from agents import Agent
from agents.run_state import RunState
from psycopg.types.json import Json

from .crosslang import js_to_python, python_to_js
from .errors import InvalidRunState, RunStateNotFound
from .store import Store
from .store.default import store_or_default

SDK = "python"
SDK_VERSION = f"openai-agents {agents.__version__}"

# One statement (schema migration 12): savers of one run take turns on an advisory lock, and
# the save retires the active row and inserts the new one, so the run ends with exactly one
# active row and every save kept as history. (js/index.mjs saves through the same function.)
_SAVE = "SELECT timestep_save_run_state($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
# The JavaScript form is read only when there is no Python form to read (a JavaScript save).
_ACTIVE = """
    SELECT id, sdk, state, CASE WHEN state IS NULL THEN state_js END AS state_js, decisions
    FROM run_states WHERE run_id = $1 AND active
"""
# Fields every schema version the SDK reads has: their absence means a truncated document.
_CORE_FIELDS = ("$schemaVersion", "current_turn", "current_agent", "original_input", "model_responses", "generated_items", "max_turns")
_MARK_RESUMED = "UPDATE run_states SET resumed_at = now() WHERE id = $1"
_LIST = """
    SELECT run_id, agent_name, status, pending_approvals, sdk, sdk_version, schema_version,
           created_at AS saved_at, resumed_at
    FROM run_states WHERE active ORDER BY created_at DESC, run_id LIMIT $1
"""


@dataclass(frozen=True)
class SavedRun:
    """One run's active saved state, as `RunStateStore.list_runs` reports it."""

    run_id: str
    agent_name: str
    status: str
    pending_approvals: int
    sdk: str  # which SDK saved it: "python" or "javascript"
    sdk_version: str | None  # e.g. "openai-agents 0.24.0" or "@openai/agents 0.20.0"
    schema_version: str
    saved_at: dt.datetime
    resumed_at: dt.datetime | None


@dataclass(frozen=True)
class PendingCall:
    """A tool call waiting for approval in a saved run."""

    call_id: str
    tool: str
    arguments: Any
    decision: dict[str, Any] | None


class RunStateStore:
    """Saved states of one run (`session_id`), resumable with `agent`'s graph."""

    def __init__(
        self,
        agent: Agent[Any],
        session_id: str | None = None,
        *,
        store: Store | None = None,
        context_serializer: Any = None,
        context_deserializer: Any = None,
        context_override: Any = None,
    ) -> None:
        self.agent = agent
        self.session_id = session_id if session_id is not None else str(uuid.uuid4())
        self._store = store
        self._context_serializer = context_serializer
        self._context_deserializer = context_deserializer
        self._context_override = context_override

    async def store(self) -> Store:
        return await store_or_default(self._store)

    async def save(self, state: RunState[Any]) -> None:
        """Save `state` as this run's active state, in one transaction; earlier saves stay as history."""
        if not isinstance(state, RunState):
            raise TypeError(
                f"RunStateStore.save() takes a RunState (from result.to_state()), not {type(state).__name__}"
            )
        document = state.to_json(context_serializer=self._context_serializer)
        try:
            js_document, conversion_error = python_to_js(document, carry=False), None  # the row keeps `document`
        except InvalidRunState as exc:  # still saved: it resumes in Python; JS gets the reason
            js_document, conversion_error = None, str(exc)
        pending = len(_interruptions(document))  # get_interruptions() copies every item
        agent_name = (document.get("current_agent") or {}).get("name") or self.agent.name
        store = await self.store()
        await store.execute(
            _SAVE,
            self.session_id,
            agent_name,
            "interrupted" if pending else "saved",
            pending,
            SDK,
            SDK_VERSION,
            str(document.get("$schemaVersion", "")),
            Json(document),  # written by the store's JSON dumper (msgspec), straight to bytes
            None if js_document is None else Json(js_document),
            conversion_error,
        )

    async def load(self) -> RunState[Any]:
        """The active saved state, ready to approve, reject and resume."""
        store = await self.store()
        row = await store.fetchrow(_ACTIVE, self.session_id)
        if row is None:
            raise RunStateNotFound(
                f"no saved state for run {self.session_id!r}; save one with RunStateStore.save(result.to_state())"
            )
        state = await self._decode(_python_document(row, self.session_id))
        for item in state.get_interruptions():
            decision = row["decisions"].get(getattr(item.raw_item, "call_id", None) or "")
            if decision is None:
                continue
            if decision.get("approved"):
                state.approve(item)
            else:
                state.reject(item, rejection_message=decision.get("message"))
        await store.execute(_MARK_RESUMED, row["id"])
        return state

    async def _decode(self, document: Any) -> RunState[Any]:
        if not isinstance(document, dict):
            raise InvalidRunState(f"the saved state of run {self.session_id!r} is not a JSON object")
        missing = [name for name in _CORE_FIELDS if name not in document]
        if missing:
            raise InvalidRunState(
                f"cannot resume run {self.session_id!r}: its saved state is truncated or not a run "
                f"state (missing {', '.join(missing)})"
            )
        try:
            return await RunState.from_json(
                self.agent,
                document,
                context_override=self._context_override,
                context_deserializer=self._context_deserializer,
            )
        except Exception as exc:  # the SDK refused it; some of its errors are redacted on purpose
            version = document.get("$schemaVersion")
            current = (document.get("current_agent") or {}).get("name")
            raise InvalidRunState(
                f"cannot resume run {self.session_id!r} (state $schemaVersion {version!r}, current "
                f"agent {current!r}) with the graph of agent {self.agent.name!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    async def clear(self) -> int:
        """Delete every saved state of this run; return how many there were."""
        store = await self.store()
        return await store.execute("DELETE FROM run_states WHERE run_id = $1", self.session_id)

    async def history(self) -> list[dict[str, Any]]:
        """Every save of this run, oldest first (without the state documents)."""
        store = await self.store()
        return await store.fetch(
            "SELECT id, status, pending_approvals, active, created_at, resumed_at FROM run_states "
            "WHERE run_id = $1 ORDER BY id",
            self.session_id,
        )

    @staticmethod
    async def pending_calls(run_id: str, store: Store | None = None) -> list[PendingCall]:
        """The tool calls waiting for approval in a run's active state, with any decision
        recorded for them; read from the stored JSON, no agent graph needed."""
        store = await store_or_default(store)
        row = await store.fetchrow(_ACTIVE, run_id)
        if row is None:
            raise RunStateNotFound(f"no saved state for run {run_id!r}; `timestep runs list` shows the saved runs")
        calls = []
        for interruption in _interruptions(_python_document(row, run_id)):
            raw = interruption.get("raw_item") or {}
            call_id = raw.get("call_id") or raw.get("id") or ""
            calls.append(
                PendingCall(
                    call_id=call_id,
                    tool=interruption.get("tool_name") or raw.get("name") or "?",
                    arguments=raw.get("arguments"),
                    decision=row["decisions"].get(call_id),
                )
            )
        return calls

    @staticmethod
    async def decide(
        run_id: str,
        *,
        approve: bool,
        call_id: str | None = None,
        message: str | None = None,
        store: Store | None = None,
    ) -> list[str]:
        """Record approval (or rejection, with `message`) of one pending call, or of all of them;
        applied when the run is next loaded. Returns the call ids decided."""
        store = await store_or_default(store)
        pending = [call.call_id for call in await RunStateStore.pending_calls(run_id, store)]
        if not pending:
            raise InvalidRunState(f"run {run_id!r} has no tool call waiting for approval")
        if call_id is not None and call_id not in pending:
            raise InvalidRunState(f"run {run_id!r} has no pending call {call_id!r}; pending: {', '.join(pending)}")
        chosen = [call_id] if call_id is not None else pending
        decision: dict[str, Any] = {"approved": True} if approve else {"approved": False, "message": message}
        await store.execute(
            "UPDATE run_states SET decisions = decisions || $2 WHERE run_id = $1 AND active",
            run_id,
            {chosen_id: decision for chosen_id in chosen},
        )
        return chosen

    @staticmethod
    async def list_runs(store: Store | None = None, *, limit: int | None = None) -> list[SavedRun]:
        """Runs with an active saved state, most recently saved first."""
        store = await store_or_default(store)
        return [SavedRun(**row) for row in await store.fetch(_LIST, limit)]


def _interruptions(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool approvals a state document waits for (its `next_step_interruption` step)."""
    step = document.get("current_step") or {}
    if step.get("type") != "next_step_interruption":
        return []
    return (step.get("data") or {}).get("interruptions") or []


def _python_document(row: dict[str, Any], run_id: str) -> Any:
    """The Python form of a saved state: as saved, or converted from the JavaScript SDK's."""
    if row["state"] is not None:
        return row["state"]
    try:
        return js_to_python(row["state_js"])
    except InvalidRunState as exc:
        raise type(exc)(f"cannot resume run {run_id!r}, saved by the {row['sdk']} SDK, in Python: {exc}") from exc
