"""A durable run's records in `run_states`, read and decided without the Agents SDK.

What a run is doing (`find_run`, `list_runs`), the tool calls it waits on (`pending_calls`) and
the decisions recorded for them (`decide`) are plain rows and JSON: the `timestep runs` commands
use them without importing the SDK (which takes seconds), and `RunStateStore` offers them as its
static methods.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from .crosslang import js_to_python
from .errors import InvalidDecision, InvalidRunState, RunNotResumable, RunStateNotFound
from .store import Store
from .store.default import store_or_default

# The JavaScript form is read only when there is no Python form to read (a JavaScript save).
ACTIVE = """
    SELECT id, sdk, status, lease_owner, lease_expires_at, state,
           CASE WHEN state IS NULL THEN state_js END AS state_js, decisions
    FROM run_states WHERE run_id = $1 AND active
"""
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
_PRUNE = "SELECT timestep_prune_run_steps($1)"
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


@dataclass(frozen=True)
class PendingCall:
    """A tool call waiting for approval in a saved run."""

    call_id: str
    tool: str
    arguments: Any
    decision: dict[str, Any] | None


async def pending_calls(run_id: str, store: Store | None = None) -> list[PendingCall]:
    """The tool calls waiting for approval in a run's active state, with any decision
    recorded for them; read from the stored JSON, no agent graph needed."""
    store = await store_or_default(store)
    row = await store.fetchrow(ACTIVE, run_id)
    if row is None:
        raise no_saved_state(run_id)
    return pending_calls_of(row, run_id)

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
    row = await store.fetchrow(ACTIVE, run_id)
    if row is None:
        raise no_saved_state(run_id)
    if row["status"] not in ("interrupted", "failed"):
        raise not_resumable(run_id, row["status"], row["lease_owner"], row["lease_expires_at"])
    pending = [call.call_id for call in pending_calls_of(row, run_id)]
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

async def prune_journals(older_than: dt.timedelta, store: Store | None = None) -> int:
    """Delete the journal steps older than `older_than` of runs that will not replay them (a
    finished run's, or a segment a later save replaced); return how many were deleted. A
    running, interrupted or failed run keeps its journal whatever its age."""
    if not isinstance(older_than, dt.timedelta) or older_than < dt.timedelta(0):
        raise ValueError(f"older_than must be a timedelta of zero or more, not {older_than!r}")
    store = await store_or_default(store)
    return int(await store.fetchval(_PRUNE, older_than))


async def find_run(run_id: str, store: Store | None = None) -> SavedRun:
    """One run's active saved state, as `list_runs` reports it."""
    store = await store_or_default(store)
    row = await store.fetchrow(_FIND, run_id)
    if row is None:
        raise no_saved_state(run_id)
    return SavedRun(**row)

async def list_runs(store: Store | None = None, *, limit: int | None = None) -> list[SavedRun]:
    """Runs with an active saved state, most recently saved first."""
    store = await store_or_default(store)
    return [SavedRun(**row) for row in await store.fetch(_LIST, limit)]


def no_saved_state(run_id: str) -> RunStateNotFound:
    return RunStateNotFound(f"no saved state for run {run_id!r}; `timestep runs list` shows the saved runs")


def pending_calls_of(row: dict[str, Any], run_id: str) -> list[PendingCall]:
    """The pending calls of a run's active row (`ACTIVE`), with their checked decisions."""
    if row["status"] not in ("interrupted", "failed"):
        return []
    document = python_document(row, run_id)
    check_interruptions(document, run_id)
    decisions = checked_decisions(row["decisions"], run_id)
    calls = []
    for interruption in interruptions_of(document):
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


def checked_decisions(decisions: Any, run_id: str) -> dict[str, dict[str, Any]]:
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


def check_interruptions(document: Any, run_id: str) -> None:
    """Each pending approval of a state document names its tool call as an object."""
    if not isinstance(document, dict):
        return  # _decode refuses it, saying so
    interruptions = interruptions_of(document)
    if not isinstance(interruptions, list):
        raise InvalidRunState(f"the saved state of run {run_id!r} lists its pending approvals as a {type(interruptions).__name__}")
    for interruption in interruptions:
        if not isinstance(interruption, dict) or not isinstance(interruption.get("raw_item"), dict):
            raise InvalidRunState(
                f"the saved state of run {run_id!r} has a pending approval that is not a tool call "
                f"({json.dumps(interruption)[:200]}): the document was changed by hand or is corrupt"
            )


def interruptions_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool approvals a state document waits for (its `next_step_interruption` step)."""
    step = document.get("current_step") or {}
    if step.get("type") != "next_step_interruption":
        return []
    return (step.get("data") or {}).get("interruptions") or []


def python_document(row: dict[str, Any], run_id: str) -> Any:
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
