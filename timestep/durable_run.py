"""A durable run's hold on its row of `run_states`: taken before anything runs, renewed while it
runs, given up with how the run ended.

`run_agent(..., run_store=...)` starts a run on new input, or claims one it resumes, through the
SQL functions of schema migration 13 (js/index.mjs calls the same ones). A claim succeeds for
one process only, and only on the run's latest save: so an approved tool call runs once, however
many processes load the run and resume it. The hold is a lease: a process that dies holding a
run loses it when the lease expires, and a worker takes the run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import uuid
from typing import Any

from agents import RunResult, RunResultStreaming
from agents.run_state import RunState
from psycopg.types.json import Json

from .errors import RunNotResumable
from .run_records import not_resumable
from .run_state import LOADED_ROW, SDK, SDK_VERSION, RunStateStore
from .store import Store

_START = "SELECT * FROM timestep_start_run($1, $2, $3, $4, $5, $6, $7)"
_CLAIM = "SELECT * FROM timestep_claim_run($1, $2, $3, $4, $5::jsonb, $6, $7, $8)"
_RENEW = "SELECT timestep_renew_run_lease($1, $2, $3)"
_END = "SELECT timestep_end_run($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"


def lease_owner() -> str:
    """A name for a holder of runs: the host and process, and a tag of its own (a run_agent
    call, or a worker)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RunLease:
    """This process's hold on a run, renewed in the background until `finish` or `fail`."""

    def __init__(self, runs: RunStateStore, store: Store, owner: str, state_id: int) -> None:
        self.runs = runs
        self.store = store
        self.owner = owner
        self.state_id = state_id  # the run_states row the run runs from: its journal's segment
        # What the run was claimed from: None for a run just started (no journal to replay),
        # "interrupted" (a pause begins a new segment: none either), "failed", "running" (its
        # process died), or "ready" (a worker's bulk claim: interrupted or running).
        self.claimed_from: str | None = "ready"
        self._timer: asyncio.TimerHandle | None = None  # the next renewal, while waiting for it
        self._renewal: asyncio.Task[None] | None = None  # a renewal under way

    @classmethod
    def held(cls, runs: RunStateStore, store: Store, owner: str, state_id: int) -> RunLease:
        """The lease of a run `owner` has already claimed (timestep.worker's bulk claims)."""
        return cls(runs, store, owner, state_id)._renewing()

    @classmethod
    async def start(cls, runs: RunStateStore, input: str | list[Any]) -> RunLease:
        """Begin a run on new input; refused while another process holds the run."""
        store = await runs.store()
        owner = lease_owner()
        row = await store.fetchrow(
            _START, runs.session_id, runs.agent.name, SDK, SDK_VERSION, Json(input), owner, runs.lease_seconds
        )
        assert row is not None
        if not row["started"]:
            raise not_resumable(runs.session_id, row["status"], row["lease_owner"], row["lease_expires_at"])
        lease = cls(runs, store, owner, row["id"])
        lease.claimed_from = None
        return lease._renewing()

    @classmethod
    async def claim(cls, runs: RunStateStore, state: RunState[Any] | None) -> RunLease:
        """Take the run to resume `state`: only its latest save (the row `load()` read, when it
        came from there), and only if interrupted, failed, or abandoned (its lease expired).
        With no state, take the run in whichever of those it is (a recovery)."""
        store = await runs.store()
        owner = lease_owner()
        loaded = None if state is None else getattr(state, LOADED_ROW, None)
        decided = None if state is None else decisions_on(state)
        # An approval or rejection for every later call of a tool lives only in the state: the
        # state is recorded with the claim, so that a recovery resumes with it.
        encoded = runs.encode(state) if state is not None and has_standing_decisions(state) else None
        row = await store.fetchrow(
            _CLAIM, runs.session_id, loaded, owner, runs.lease_seconds, decided,
            *((encoded.state, encoded.state_js, encoded.conversion_error) if encoded else (None, None, None)),
        )
        assert row is not None
        if not row["claimed"]:
            superseded = loaded is not None and row["active_id"] is not None and row["active_id"] != loaded
            raise not_resumable(
                runs.session_id, row["status"], row["lease_owner"], row["lease_expires_at"], superseded=superseded
            )
        lease = cls(runs, store, owner, row["active_id"])
        lease.claimed_from = row["claimed_from"]
        return lease._renewing()

    async def finish(self, result: RunResult | RunResultStreaming) -> None:
        """Record how the run came to rest: `interrupted` (its state saved, waiting for
        approvals) or `finished` (its final output); then let go of it."""
        await self._stop_renewing()
        if result.interruptions:
            encoded = self.runs.encode(result.to_state())
            ended = await self.store.fetchval(
                _END, self.runs.session_id, self.owner, "interrupted", encoded.agent_name, encoded.pending, SDK,
                SDK_VERSION, encoded.schema_version, encoded.state, encoded.state_js, encoded.conversion_error, None, None,
            )
        else:
            ended = await self.store.fetchval(
                _END, self.runs.session_id, self.owner, "finished", self.runs.agent.name, 0, SDK, SDK_VERSION, "",
                None, None, None, Json(_jsonable(result.final_output)), None,
            )
        if not ended:
            raise self._lost_error()

    async def fail(self, error: BaseException) -> None:
        """Record that the run failed with `error`, keeping the state it started from for a
        retry; then let go of it. Runs to the end even if the caller is cancelled."""
        await self._stop_renewing()
        message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        write = self.store.fetchval(
            _END, self.runs.session_id, self.owner, "failed", self.runs.agent.name, 0, SDK, SDK_VERSION, "",
            None, None, None, None, message,
        )
        with contextlib.suppress(Exception):  # the error being raised matters more than this one
            await asyncio.shield(write)

    def _renewing(self) -> RunLease:
        """Renew the lease every third of it, until `_stop_renewing`. A timer, not a task, while
        nothing is due: most runs end before their first renewal."""
        self._timer = asyncio.get_running_loop().call_later(self.runs.lease_seconds / 3, self._renew_now)
        return self

    def _renew_now(self) -> None:
        self._renewal = asyncio.create_task(self._renew(), name=f"timestep lease of run {self.runs.session_id}")

    async def _renew(self) -> None:
        try:
            held = await self.store.fetchval(_RENEW, self.runs.session_id, self.owner, self.runs.lease_seconds)
        except Exception:
            held = True  # the store is down for a moment: the next renewal tries again
        if held:  # else taken over: finish() or fail() finds it so and records nothing
            self._renewing()

    async def _stop_renewing(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
            self._renewal = None

    def _lost_error(self) -> RunNotResumable:
        return RunNotResumable(
            f"run {self.runs.session_id!r} was taken from this process while it ran (its lease of "
            f"{self.runs.lease_seconds:g} s ran out without being renewed): what this run did was not recorded",
            run_id=self.runs.session_id, reason="lost",
        )


def decisions_on(state: RunState[Any]) -> Json | None:
    """The approvals and rejections made on `state`'s pending calls (as `runs approve` records
    them), or None if there are none: recorded when the run is claimed, so that a recovery of
    what follows resumes with them too."""
    decisions: dict[str, Any] = {}
    context = state._context
    for item in state.get_interruptions():
        call_id = getattr(item.raw_item, "call_id", None)
        if not isinstance(call_id, str) or context is None:
            continue
        approved = context.is_tool_approved(item.tool_name or "", call_id)
        if approved is True:
            decisions[call_id] = {"approved": True}
        elif approved is False:
            message = context.get_rejection_message(item.tool_name or "", call_id, existing_pending=item)
            decisions[call_id] = {"approved": False, "message": message}
    return Json(decisions) if decisions else None


def has_standing_decisions(state: RunState[Any]) -> bool:
    """Whether `state` holds an approval or rejection of every call of some tool
    (`approve(item, always_approve=True)`, `reject(item, always_reject=True)`)."""
    approvals = getattr(state._context, "_approvals", None) or {}
    return any(record.approved is True or record.rejected is True for record in approvals.values())


def _jsonable(output: Any) -> Any:
    """A run's final output as JSON: a Pydantic model's dump, a dataclass's fields, or as is;
    anything JSON cannot hold, as its text."""
    if hasattr(output, "model_dump"):
        output = output.model_dump(mode="json")
    elif dataclasses.is_dataclass(output) and not isinstance(output, type):
        output = dataclasses.asdict(output)
    try:
        json.dumps(output)
    except (TypeError, ValueError):
        return str(output)
    return output
