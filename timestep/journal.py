"""A durable run's journal (`run_steps`): each model response, tool output and session write of
the segment it runs, recorded as it completes, and replayed when the run is recovered.

A segment is the run from one `run_states` row: a start's, or the interrupted (or failed, or
abandoned) row a claim takes. A process that dies mid-run leaves the segment `running` with
its journal; whoever claims it next opens the journal, and the run is replayed from the
segment's beginning: a model response or tool output the journal has is returned from it
instead of being asked for again, and from the first step it lacks the run goes on live.

Steps are keyed so that replay depends neither on time nor on the order in which parallel
tools finish: a model response by its number in the segment, a tool output by its call id
and the number of model responses before it. The run's session is put back as it was when
the segment began (the items each journaled write added are deleted, in one statement), so
that the replay, which writes them again, leaves it as an uninterrupted run does.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents.items import ModelResponse
from agents.tool import ToolOutputFileContent, ToolOutputImage, ToolOutputText
from psycopg.types.json import Json
from pydantic import TypeAdapter, ValidationError

from .errors import InvalidJournal, RunNotResumable

if TYPE_CHECKING:
    from .store import Store

_STEPS = "SELECT kind, turn, call_id, seq, payload FROM run_steps WHERE state_id = $1"
_FORGET_STEP = "DELETE FROM run_steps WHERE state_id = $1 AND kind = $2 AND turn = $3 AND call_id = $4"
# Which SDK journaled the steps of a run's active segment (its session writes are either's).
_JOURNALED_BY = """
    SELECT count(*) FILTER (WHERE j.payload ->> 'sdk' = 'javascript') AS javascript
    FROM run_steps j JOIN run_states s ON s.id = j.state_id
    WHERE s.run_id = $1 AND s.active AND j.kind <> 'session'
"""
_SESSION_OF = """
    SELECT payload ->> 'session_id' AS session_id, payload ->> 'branch' AS branch
    FROM run_steps WHERE state_id = $1 AND kind = 'session' ORDER BY turn DESC LIMIT 1
"""
# A step already journaled, and whether its segment is still this owner's ($5).
_JOURNALED = """
    SELECT j.payload, (s.active AND s.status = 'running' AND s.lease_owner = $5) AS held
    FROM run_steps j JOIN run_states s ON s.id = j.state_id
    WHERE j.state_id = $1 AND j.kind = $2 AND j.turn = $3 AND j.call_id = $4
"""
# One step, written only while its owner ($2) still holds the run's row (under a share lock of
# it: a claim by another process waits for this statement, and then this one finds the run not
# its owner's). A prepared statement: a SQL function doing the same costs half as much again.
_JOURNAL = """
    INSERT INTO run_steps (run_id, state_id, kind, turn, call_id, seq, payload)
    SELECT s.run_id, $1, $3, $4, $5, $6, $7 FROM run_states s
    WHERE s.id = $1 AND s.active AND s.status = 'running' AND s.lease_owner = $2
    FOR SHARE
    ON CONFLICT (state_id, kind, turn, call_id) DO NOTHING
"""
# The session writes of a segment undone: their items deleted, and the steps that recorded them.
_REWIND_SESSION = """
    WITH undone AS (DELETE FROM run_steps WHERE state_id = $1 AND kind = 'session' RETURNING payload)
    DELETE FROM agent_messages m USING undone, json_array_elements_text(undone.payload -> 'ids') AS added (id)
    WHERE m.id = added.id::bigint AND m.session_id = undone.payload ->> 'session_id'
"""

_RESPONSE = TypeAdapter(ModelResponse)
_TOOL_OUTPUT = TypeAdapter(ToolOutputText | ToolOutputImage | ToolOutputFileContent)

# The journal of the durable run this code runs in (None outside one, and inside a tool:
# a tool's own runs are not steps of the run that called it).
ACTIVE: ContextVar[RunJournal | None] = ContextVar("timestep_run_journal", default=None)
# The key of the journaled tool call this code runs in (`tool_call_key()`).
TOOL_CALL: ContextVar[str | None] = ContextVar("timestep_tool_call", default=None)


def tool_call_key() -> str | None:
    """Inside a function tool of a durable run: a key naming this tool call, the same when a
    recovery runs the call again (a call that was running when its process died has no
    journaled output, and runs again: at least once). Give it to the service the tool acts on
    as an idempotency key, so that the second run changes nothing. None outside a durable run."""
    return TOOL_CALL.get()


@dataclass(frozen=True)
class ToolStep:
    """A tool call's journaled result: its output, and whether the SDK made it (an error text)."""

    output: Any
    sdk_generated_error: bool


class RunJournal:
    """The journal of one segment of a durable run, held by `owner`."""

    def __init__(self, store: Store, run_id: str, state_id: int, owner: str, steps: list[dict[str, Any]]) -> None:
        self.store = store
        self.run_id = run_id
        self.state_id = state_id
        self.owner = owner
        self.session: Any = None  # the session whose writes are journaled (a timestep Session)
        self.entered = False  # set as the run begins: a run begun inside it is not its steps
        self.model_responses = 0  # model responses of the segment so far, replayed or live
        self.session_writes = 0
        self.models: dict[int, Any] = {}  # id(model) -> its JournaledModel (timestep.journaled)
        self._recorded = {(row["kind"], row["turn"], row["call_id"]): row["payload"] for row in steps}
        self._seq = max((row["seq"] for row in steps), default=0)

    @classmethod
    def new(cls, store: Store, run_id: str, state_id: int, owner: str) -> RunJournal:
        """The empty journal of a segment that has just begun."""
        return cls(store, run_id, state_id, owner, [])

    @classmethod
    async def open(
        cls, store: Store, run_id: str, state_id: int, owner: str, *, session_id: str | None, after_failure: bool
    ) -> RunJournal:
        """The journal of a segment that may have run before (a claim): its steps, with the
        session writes it made undone, so that the replay makes them again (in `session_id`,
        which must be the session they were made in). After a failure, a model response that
        was the segment's last step is dropped: the run may have failed on it, and a retry
        asks the model again."""
        steps = await store.fetch(_STEPS, state_id)
        if any(isinstance(row["payload"], dict) and row["payload"].get("sdk") == "javascript" for row in steps):
            raise _journaled_in_javascript(run_id)
        written = [row for row in steps if row["kind"] == "session"]
        if written:
            journaled_in = {row["payload"].get("session_id") for row in written}
            if journaled_in != {session_id}:
                raise InvalidJournal(
                    f"run {run_id!r} wrote its conversation to session {sorted(journaled_in)[0]!r}, not "
                    f"{session_id!r}: recover it with that session (Session({sorted(journaled_in)[0]!r}))"
                )
            await store.execute(_REWIND_SESSION, state_id)
        steps = [row for row in steps if row["kind"] != "session"]
        if after_failure and steps:
            last = max(steps, key=lambda row: row["seq"])
            if last["kind"] == "model":
                await store.execute(_FORGET_STEP, state_id, "model", last["turn"], "")
                steps.remove(last)
        return cls(store, run_id, state_id, owner, steps)

    @staticmethod
    async def check_replayable(store: Store, run_id: str) -> None:
        """InvalidJournal if the JavaScript SDK journaled the run's current segment: checked
        before a recovery claims the run, so that refusing it leaves the run as it was."""
        if await store.fetchval(_JOURNALED_BY, run_id):
            raise _journaled_in_javascript(run_id)

    @staticmethod
    async def session_of(store: Store, state_id: int) -> tuple[str, str | None] | None:
        """The session the segment wrote its conversation to, if it wrote any, and the branch
        its last write went to (an AdvancedSession's; None for a Session's)."""
        row = await store.fetchrow(_SESSION_OF, state_id)
        return None if row is None else (row["session_id"], row["branch"])

    def journals_session(self, session: Any) -> bool:
        """Whether `session`'s writes are this run's, journaled with their items."""
        return session is self.session and session is not None

    # Model responses

    def replay_response(self) -> ModelResponse | None:
        """The journaled response to the segment's next model call, or None: call the model."""
        payload = self._recorded.get(("model", self.model_responses, ""))
        if payload is None:
            return None
        response = self._response(payload)
        self.model_responses += 1
        return response

    async def record_response(self, response: ModelResponse) -> ModelResponse:
        """Journal the segment's next model response, as it returns; return the response the
        run goes on with: this one, or the one an earlier attempt of the same call journaled
        (its write was committed, then cancelled by the SDK's timeout, and the call retried)."""
        payload = _RESPONSE.dump_python(response, mode="json", by_alias=True, exclude_unset=True)
        payload.pop("raw_usage", None)  # a provider's raw payload: not needed to replay
        journaled = await self._journal("model", self.model_responses, "", payload)
        if journaled is not None:
            response = self._response(journaled)
        self.model_responses += 1
        return response

    def _response(self, payload: Any) -> ModelResponse:
        try:
            return _RESPONSE.validate_python(payload)
        except ValidationError as exc:
            raise self._invalid(f"model response {self.model_responses}", exc) from exc

    # Tool outputs

    def replay_tool(self, call_id: str, tool: Any) -> ToolStep | None:
        """The journaled result of call `call_id` of `tool` in this turn, or None: run it."""
        payload = self._recorded.get(("tool", self.model_responses, call_id))
        if payload is None:
            return None
        return self._tool_step(call_id, tool, payload)

    def tool_key(self, call_id: str) -> str:
        """A key naming tool call `call_id` of this turn, the same when a recovery runs it again."""
        return f"{self.run_id}:{self.state_id}:{self.model_responses}:{call_id}"

    async def record_tool(self, call_id: str, turn: int, tool: Any, step: ToolStep) -> ToolStep:
        """Journal a tool call's result, as the tool returns; return the result the run goes
        on with (this one, unless the call's result was journaled already)."""
        payload = _encoded_output(step.output, getattr(tool, "_output_type_adapter", None))
        if step.sdk_generated_error:
            payload["sdk_error"] = True
        journaled = await self._journal("tool", turn, call_id, payload)
        return step if journaled is None else self._tool_step(call_id, tool, journaled)

    def _tool_step(self, call_id: str, tool: Any, payload: Any) -> ToolStep:
        output = _decoded_output(
            payload, getattr(tool, "_output_type_adapter", None), lambda exc: self._invalid(f"tool call {call_id!r}", exc)
        )
        return ToolStep(output, bool(payload.get("sdk_error")))

    # Session writes

    def session_write_params(self) -> list[Any]:
        """The journal's parameters to a journaled session write (Session.add_items), which
        adds the items and the step recording their ids in one statement."""
        self._seq += 1
        return [self.state_id, self.owner, self.session_writes, self._seq]

    def session_written(self, journaled: bool) -> None:
        """Count a journaled session write; raise if the run was taken meanwhile."""
        if not journaled:
            raise self.lost()
        self.session_writes += 1

    async def _journal(self, kind: str, turn: int, call_id: str, payload: Any) -> Any:
        """Write a step; return None, or the payload already journaled for it."""
        self._seq += 1
        if await self.store.execute(_JOURNAL, self.state_id, self.owner, kind, turn, call_id, self._seq, Json(payload)):
            return None
        row = await self.store.fetchrow(_JOURNALED, self.state_id, kind, turn, call_id, self.owner)
        if row is None or not row["held"]:
            raise self.lost()
        return row["payload"]

    def lost(self) -> RunNotResumable:
        return RunNotResumable(
            f"run {self.run_id!r} was taken from this process while it ran (its lease ran out without "
            "being renewed): it stops here, and the process that took it goes on from its journal",
            run_id=self.run_id, reason="lost",
        )

    def _invalid(self, what: str, exc: Exception) -> InvalidJournal:
        return InvalidJournal(
            f"cannot replay run {self.run_id!r}: the journal's {what} (segment {self.state_id}) is not one "
            f"this version of the Agents SDK reads: {exc}"
        )


def _journaled_in_javascript(run_id: str) -> InvalidJournal:
    return InvalidJournal(
        f"cannot replay run {run_id!r} in Python: its journal was written by the JavaScript SDK; recover it "
        "from JavaScript (RunStateStore.recover() in timestep's JS module)"
    )


def _encoded_output(output: Any, adapter: Any) -> dict[str, Any]:
    """A tool's output as the journal keeps it: a JSON value as is, an output of the tool's
    declared type by its JSON form, the SDK's structured outputs (text, image, file) by their
    fields, anything else by the text the SDK would send the model."""
    if adapter is not None and not isinstance(output, str):
        try:
            return {"typed": adapter.dump_python(output, mode="json", by_alias=True)}
        except (TypeError, ValueError):
            pass  # not of its declared type: the SDK refuses it; journaled as it is
    if isinstance(output, (ToolOutputText, ToolOutputImage, ToolOutputFileContent)):
        return {"tool_output": output.model_dump(mode="json")}
    if isinstance(output, (list, tuple)) and output and all(
        isinstance(item, (ToolOutputText, ToolOutputImage, ToolOutputFileContent)) for item in output
    ):
        return {"tool_outputs": [item.model_dump(mode="json") for item in output]}
    if _is_json(output):
        return {"value": output}
    return {"text": str(output)}


def _decoded_output(payload: Any, adapter: Any, invalid: Any) -> Any:
    try:
        if "typed" in payload:
            if adapter is None:
                raise TypeError("the tool no longer declares an output type")
            return adapter.validate_python(payload["typed"])
        if "value" in payload:
            return payload["value"]
        if "text" in payload:
            return payload["text"]
        if "tool_output" in payload:
            return _TOOL_OUTPUT.validate_python(payload["tool_output"])
        if "tool_outputs" in payload:
            return [_TOOL_OUTPUT.validate_python(item) for item in payload["tool_outputs"]]
    except (TypeError, ValidationError) as exc:
        raise invalid(exc) from exc
    raise invalid(ValueError(f"unknown tool output {payload!r:.100}"))


def _is_json(value: Any) -> bool:
    """Whether `value` comes back from JSON as itself (no tuples, no non-string keys)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return not isinstance(value, float) or value == value and value not in (float("inf"), float("-inf"))
    if type(value) is list:
        return all(_is_json(item) for item in value)
    if type(value) is dict:
        return all(type(key) is str and _is_json(item) for key, item in value.items())
    return False

