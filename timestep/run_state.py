"""`RunStateStore`: save a paused run, load it later anywhere, resume it.

Each save is a row of `run_states` holding the SDK's own JSON (`RunState.to_json()`, with its
`$schemaVersion`) and the same state converted for the JavaScript SDK (`timestep.crosslang`),
so the run resumes in either language. Earlier saves of a run stay as history; exactly one row
per run is active, and `load()` returns it, converting a state the JavaScript SDK saved.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

import agents
from agents import Agent
from agents.run_state import RunState
from psycopg.types.json import Json

from .crosslang import js_to_python, python_to_js
from .errors import InvalidDecision, InvalidRunState, RunNotResumable, RunStateNotFound
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
    SELECT id, sdk, status, lease_owner, lease_expires_at, state,
           CASE WHEN state IS NULL THEN state_js END AS state_js, decisions
    FROM run_states WHERE run_id = $1 AND active
"""
# Fields every schema version the SDK reads has: their absence means a truncated document.
_CORE_FIELDS = ("$schemaVersion", "current_turn", "current_agent", "original_input", "model_responses", "generated_items", "max_turns")
_MARK_RESUMED = "UPDATE run_states SET resumed_at = now() WHERE id = $1"
# The columns of a SavedRun.
_RUN = """
    SELECT run_id, agent_name, status, pending_approvals, sdk, sdk_version, schema_version,
           created_at AS saved_at, resumed_at, lease_owner, lease_expires_at, final_output, error
    FROM run_states WHERE active
"""
_LIST = _RUN + " ORDER BY created_at DESC, run_id LIMIT $1"
_FIND = _RUN + " AND run_id = $1"
# Decisions are recorded only on a run waiting for them (or failed while resuming them), and
# only on the row whose pending calls they were checked against ($3).
_DECIDE = """
    UPDATE run_states SET decisions = decisions || $2
    WHERE run_id = $1 AND id = $3 AND active AND status IN ('interrupted', 'failed')
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
    lease_owner: str | None = None  # running: the process that holds it
    lease_expires_at: dt.datetime | None = None  # running: until when, unless renewed
    final_output: Any = None  # finished: the run's final output, as JSON
    error: str | None = None  # failed: what went wrong


# A durable run (run_agent with a run_store) is held under a lease this long, renewed every
# third of it while the run runs; a process that dies holding a run loses it this long after.
LEASE_SECONDS = 60.0
# The attribute load() sets on the RunState it returns: the id of the row it came from.
LOADED_ROW = "_timestep_loaded_row"


@dataclass(frozen=True)
class EncodedState:
    """A RunState as `run_states` stores it (RunStateStore.encode)."""

    agent_name: str
    pending: int
    schema_version: str
    state: Json
    state_js: Json | None
    conversion_error: str | None


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
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        if not lease_seconds > 0:
            raise ValueError(f"lease_seconds must be positive, not {lease_seconds!r}")
        self.agent = agent
        self.session_id = session_id if session_id is not None else str(uuid.uuid4())
        self.lease_seconds = float(lease_seconds)  # how long a durable run is held without renewal
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
        encoded = self.encode(state)
        store = await self.store()
        await store.execute(
            _SAVE,
            self.session_id,
            encoded.agent_name,
            "interrupted" if encoded.pending else "finished",
            encoded.pending,
            SDK,
            SDK_VERSION,
            encoded.schema_version,
            encoded.state,
            encoded.state_js,
            encoded.conversion_error,
        )

    def encode(self, state: RunState[Any]) -> EncodedState:
        """`state` as a row stores it: the SDK's JSON, its JavaScript form (or why there is none)."""
        document = state.to_json(context_serializer=self._context_serializer)
        try:
            js_document, conversion_error = python_to_js(document, carry=False), None  # the row keeps `document`
        except InvalidRunState as exc:  # still saved: it resumes in Python; JS gets the reason
            js_document, conversion_error = None, str(exc)
        return EncodedState(
            agent_name=(document.get("current_agent") or {}).get("name") or self.agent.name,
            pending=len(_interruptions(document)),  # get_interruptions() copies every item
            schema_version=str(document.get("$schemaVersion", "")),
            state=Json(document),  # written by the store's JSON dumper (msgspec), straight to bytes
            state_js=None if js_document is None else Json(js_document),
            conversion_error=conversion_error,
        )

    async def load(self) -> RunState[Any]:
        """The active saved state, ready to approve, reject and resume (a finished run has
        nothing to resume: `RunNotResumable`)."""
        store = await self.store()
        row = await store.fetchrow(_ACTIVE, self.session_id)
        if row is None:
            raise RunStateNotFound(
                f"no saved state for run {self.session_id!r}; save one with RunStateStore.save(result.to_state())"
            )
        if row["status"] == "finished":  # nothing to resume; its row keeps what it last ran from
            raise not_resumable(self.session_id, "finished", None, None)
        document = _python_document(row, self.session_id)
        _check_interruptions(document, self.session_id)
        decisions = _checked_decisions(row["decisions"], self.session_id)
        state = await self._decode(document)
        for item in state.get_interruptions():
            decision = decisions.get(getattr(item.raw_item, "call_id", None) or "")
            if decision is None:
                continue
            if decision["approved"]:
                state.approve(item)
            else:
                state.reject(item, rejection_message=decision.get("message"))
        await store.execute(_MARK_RESUMED, row["id"])
        setattr(state, LOADED_ROW, row["id"])  # run_agent(..., run_store=) claims this row
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
            raise _no_saved_state(run_id)
        return _pending_calls(row, run_id)

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
        if not isinstance(approve, bool):
            raise InvalidDecision(f"a decision on run {run_id!r} must approve (True) or reject (False), not {approve!r}")
        if message is not None and not isinstance(message, str):
            raise InvalidDecision(f"a rejection message on run {run_id!r} must be text, not {type(message).__name__}")
        store = await store_or_default(store)
        row = await store.fetchrow(_ACTIVE, run_id)
        if row is None:
            raise _no_saved_state(run_id)
        if row["status"] not in ("interrupted", "failed"):
            raise not_resumable(run_id, row["status"], row["lease_owner"], row["lease_expires_at"])
        pending = [call.call_id for call in _pending_calls(row, run_id)]
        if not pending:
            raise InvalidRunState(f"run {run_id!r} has no tool call waiting for approval")
        if call_id is not None and call_id not in pending:
            raise InvalidRunState(f"run {run_id!r} has no pending call {call_id!r}; pending: {', '.join(pending)}")
        chosen = [call_id] if call_id is not None else pending
        decision: dict[str, Any] = {"approved": True} if approve else {"approved": False, "message": message}
        if not await store.execute(_DECIDE, run_id, {chosen_id: decision for chosen_id in chosen}, row["id"]):
            raise RunNotResumable(
                f"run {run_id!r} changed while the decision was being recorded; nothing was recorded: "
                "`timestep runs show` says where it is now", run_id=run_id, reason="superseded",
            )
        return chosen

    @staticmethod
    async def find_run(run_id: str, store: Store | None = None) -> SavedRun:
        """One run's active saved state, as `list_runs` reports it."""
        store = await store_or_default(store)
        row = await store.fetchrow(_FIND, run_id)
        if row is None:
            raise _no_saved_state(run_id)
        return SavedRun(**row)

    @staticmethod
    async def list_runs(store: Store | None = None, *, limit: int | None = None) -> list[SavedRun]:
        """Runs with an active saved state, most recently saved first."""
        store = await store_or_default(store)
        return [SavedRun(**row) for row in await store.fetch(_LIST, limit)]


def _no_saved_state(run_id: str) -> RunStateNotFound:
    return RunStateNotFound(f"no saved state for run {run_id!r}; `timestep runs list` shows the saved runs")


def _pending_calls(row: dict[str, Any], run_id: str) -> list[PendingCall]:
    """The pending calls of a run's active row (`_ACTIVE`), with their checked decisions."""
    if row["status"] not in ("interrupted", "failed"):
        return []
    document = _python_document(row, run_id)
    _check_interruptions(document, run_id)
    decisions = _checked_decisions(row["decisions"], run_id)
    calls = []
    for interruption in _interruptions(document):
        raw = interruption["raw_item"]
        call_id = raw.get("call_id") or raw.get("id") or ""
        calls.append(
            PendingCall(
                call_id=call_id,
                tool=interruption.get("tool_name") or raw.get("name") or "?",
                arguments=raw.get("arguments"),
                decision=decisions.get(call_id),
            )
        )
    return calls


def not_resumable(run_id: str, status: str | None, owner: str | None, expires: Any, *, superseded: bool = False) -> RunNotResumable:
    """Why run `run_id`, whose active row is in `status`, cannot be taken by this process."""
    if status is None:
        return RunNotResumable(
            f"run {run_id!r} has no saved state: nothing to resume", run_id=run_id, reason="missing"
        )
    if superseded:
        return RunNotResumable(
            f"run {run_id!r} was saved again since this state was loaded (it is now {status}): "
            "load it again to resume its latest state; nothing ran",
            run_id=run_id, reason="superseded", status=status, lease_owner=owner, lease_expires_at=expires,
        )
    if status == "running":
        return RunNotResumable(
            f"run {run_id!r} is being run by {owner} (its lease runs until {expires}): nothing ran. "
            "If that process died, the run can be taken once the lease expires",
            run_id=run_id, reason="held", status=status, lease_owner=owner, lease_expires_at=expires,
        )
    return RunNotResumable(
        f"run {run_id!r} is {status}: it has nothing left to resume, and nothing ran. "
        "`timestep runs show` prints its final output",
        run_id=run_id, reason="finished", status=status,
    )


def _checked_decisions(decisions: Any, run_id: str) -> dict[str, dict[str, Any]]:
    """The recorded decisions of a run, each checked: `{"approved": bool, "message": str | None}`."""
    if not isinstance(decisions, dict):
        raise InvalidDecision(
            f"the decisions recorded for run {run_id!r} are a JSON {type(decisions).__name__}, not an object of "
            "call id -> decision; record them with `timestep runs approve/reject`"
        )
    for call_id, decision in decisions.items():
        if (
            not isinstance(decision, dict)
            or not isinstance(decision.get("approved"), bool)
            or not isinstance(decision.get("message"), (str, type(None)))
            or set(decision) - {"approved", "message"}
        ):
            raise InvalidDecision(
                f"the decision recorded for call {call_id!r} of run {run_id!r} is {json.dumps(decision)}, not "
                '{"approved": true} or {"approved": false, "message": "..."}; record it again with '
                "`timestep runs approve/reject`"
            )
    return decisions


def _check_interruptions(document: Any, run_id: str) -> None:
    """Each pending approval of a state document names its tool call as an object."""
    if not isinstance(document, dict):
        return  # _decode refuses it, saying so
    interruptions = _interruptions(document)
    if not isinstance(interruptions, list):
        raise InvalidRunState(f"the saved state of run {run_id!r} lists its pending approvals as a {type(interruptions).__name__}")
    for interruption in interruptions:
        if not isinstance(interruption, dict) or not isinstance(interruption.get("raw_item"), dict):
            raise InvalidRunState(
                f"the saved state of run {run_id!r} has a pending approval that is not a tool call "
                f"({json.dumps(interruption)[:200]}): the document was changed by hand or is corrupt"
            )


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
    if row["state_js"] is None:  # a run started on new input, before its first save
        raise RunStateNotFound(
            f"run {run_id!r} has no saved state yet: it is {row['status']} on its first input"
            + (f", held by {row['lease_owner']} until {row['lease_expires_at']}" if row["status"] == "running" else "")
        )
    try:
        return js_to_python(row["state_js"])
    except InvalidRunState as exc:
        raise type(exc)(f"cannot resume run {run_id!r}, saved by the {row['sdk']} SDK, in Python: {exc}") from exc
