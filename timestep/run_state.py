"""`RunStateStore`: save a paused run, load it later anywhere, resume it.

Each save is a row of `run_states` holding the SDK's own JSON (`RunState.to_json()`, with its
`$schemaVersion`) and the same state converted for the JavaScript SDK (`timestep.crosslang`),
so the run resumes in either language. Earlier saves of a run stay as history; exactly one row
per run is active, and `load()` returns it, converting a state the JavaScript SDK saved.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import agents
from agents import Agent
from agents.run_state import RunState
from psycopg.types.json import Json

from . import run_records
from .crosslang import python_to_js
from .errors import InvalidRunState, RunStateNotFound
from .run_records import (
    ACTIVE,
    PendingCall,
    SavedRun,
    check_interruptions,
    checked_decisions,
    interruptions_of,
    not_resumable,
    python_document,
)
from .store import Store
from .store.default import store_or_default

__all__ = ["PendingCall", "RunStateStore", "SavedRun"]  # the first and last: run_records', offered here too

SDK = "python"
SDK_VERSION = f"openai-agents {agents.__version__}"

# One statement (schema migration 12): savers of one run take turns on an advisory lock, and
# the save retires the active row and inserts the new one, so the run ends with exactly one
# active row and every save kept as history. (js/index.mjs saves through the same function.)
_SAVE = "SELECT timestep_save_run_state($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
# Fields every schema version the SDK reads has: their absence means a truncated document.
_CORE_FIELDS = ("$schemaVersion", "current_turn", "current_agent", "original_input", "model_responses", "generated_items", "max_turns")
_MARK_RESUMED = "UPDATE run_states SET resumed_at = now() WHERE id = $1"
# A claimed run's active row: new (it has only its input) or saved (its state).
_INPUT = "SELECT state IS NULL AND state_js IS NULL AS new, input FROM run_states WHERE run_id = $1 AND active"


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
            pending=len(interruptions_of(document)),  # get_interruptions() copies every item
            schema_version=str(document.get("$schemaVersion", "")),
            state=Json(document),  # written by the store's JSON dumper (msgspec), straight to bytes
            state_js=None if js_document is None else Json(js_document),
            conversion_error=conversion_error,
        )

    async def load(self) -> RunState[Any]:
        """The active saved state, ready to approve, reject and resume (a finished run has
        nothing to resume: `RunNotResumable`)."""
        store = await self.store()
        row = await store.fetchrow(ACTIVE, self.session_id)
        if row is None:
            raise RunStateNotFound(
                f"no saved state for run {self.session_id!r}; save one with RunStateStore.save(result.to_state())"
            )
        if row["status"] == "finished":  # nothing to resume; its row keeps what it last ran from
            raise not_resumable(self.session_id, "finished", None, None)
        document = python_document(row, self.session_id)
        check_interruptions(document, self.session_id)
        decisions = checked_decisions(row["decisions"], self.session_id)
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

    async def resume_input(self) -> str | list[Any] | RunState[Any]:
        """What a run this process has claimed goes on from: its input, if it never paused;
        else its latest saved state, with the decisions recorded for it."""
        store = await self.store()
        row = await store.fetchrow(_INPUT, self.session_id)
        if row is None:
            raise RunStateNotFound(f"no saved state for run {self.session_id!r}")
        return row["input"] if row["new"] else await self.load()  # type: ignore[no-any-return]

    async def recover(
        self,
        session: Any = None,
        *,
        run_config: Any = None,
        context: Any = None,
        max_turns: int | None = None,
        hooks: Any = None,
    ) -> Any:
        """Take this run back and run it to its end or next pause, if no process holds it: one
        whose process died while it ran (its lease expired), one that failed, or one that is
        interrupted. What its journal holds is replayed, not done again: a model response or
        tool output of the segment is taken from the journal, and the run goes on live from the
        first step the journal lacks. `session` is the run's session (default: the Session its
        journal says it wrote to, else the one named by the run id, as `timestep worker` does).
        Returns the SDK's `RunResult`; raises `RunNotResumable` if the run is finished or held,
        and then nothing runs."""
        from .recovery import recover_run  # it runs agents, which needs the runner: see there

        return await recover_run(self, session, run_config=run_config, context=context, max_turns=max_turns, hooks=hooks)

    pending_calls = staticmethod(run_records.pending_calls)
    decide = staticmethod(run_records.decide)
    find_run = staticmethod(run_records.find_run)
    list_runs = staticmethod(run_records.list_runs)
    prune_journals = staticmethod(run_records.prune_journals)

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



