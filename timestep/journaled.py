"""Where a durable run's steps meet the Agents SDK: the model it calls and the tools it runs.

Two functions of the SDK's run loop are wrapped, once per process (`install`), and act only
inside a durable run (`journal.ACTIVE` set; everywhere else they are the SDK's own). So are the
runner's `run` and `run_streamed`, so that a run begun inside a durable one (by a guardrail, a
hook, or an agent used as a tool) is not journaled as its steps:

- `get_model`, which resolves an agent's model each turn, however it is given (a name routed
  by the run's provider, a `Model` on the agent or in the RunConfig): inside a durable run
  the model comes wrapped in `JournaledModel`, which journals each response as it returns
  (`get_response`, and `stream_response` at its completed event) and replays journaled ones.
- `_invoke_function_tool_with_metadata`, the one place a function tool's `on_invoke_tool` is
  awaited (with its timeout, for calls run after an approval too): a call whose output the
  journal has returns it without running; any other runs, then its output is journaled.

Wrapping the SDK's resolution and invocation, rather than copying the user's agents with
wrapped models and tools, keeps every object the user passed the one the SDK sees (hooks
compare agents by identity; a RunState loaded with the user's graph holds the user's tools).
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import agents
from agents.items import ModelResponse, TResponseStreamEvent
from agents.agent_tool_state import get_agent_tool_state_scope, peek_agent_tool_run_result
from agents.models.interface import Model
from agents.run import AgentRunner
from agents.run_internal import run_loop, tool_execution
from agents.tool import _FunctionToolInvocationResult
from agents.usage import Usage, _attach_normalized_usage, _response_usage_to_usage
from openai.types.responses import Response, ResponseCompletedEvent, ResponseOutputItemDoneEvent, ResponseUsage

from .errors import ConfigurationError
from .journal import ACTIVE, TOOL_CALL, RunJournal, ToolStep

_installed = False
_install_lock = threading.Lock()


def install() -> None:
    """Wrap the SDK's model resolution and function-tool invocation (idempotent)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        sdk_get_model = getattr(run_loop, "get_model", None)
        sdk_invoke = getattr(tool_execution, "_invoke_function_tool_with_metadata", None)
        if sdk_get_model is None or sdk_invoke is None:
            raise ConfigurationError(
                f"durable runs cannot journal steps with openai-agents {agents.__version__}: its run loop "
                "has no get_model or _invoke_function_tool_with_metadata; install the version timestep "
                "requires (pip install 'openai-agents>=0.24,<0.25')"
            )
        run_loop.get_model = _journaled_get_model(sdk_get_model)  # type: ignore[attr-defined]
        tool_execution._invoke_function_tool_with_metadata = _journaled_invoke(sdk_invoke)  # type: ignore[attr-defined]
        AgentRunner.run = _outermost_run(AgentRunner.run)  # type: ignore[method-assign]
        AgentRunner.run_streamed = _outermost_run_streamed(AgentRunner.run_streamed)  # type: ignore[method-assign]
        _installed = True


def _nested(journal: RunJournal | None) -> bool:
    """Whether a run beginning here runs inside another (a guardrail's or a hook's run, or an
    agent as a tool): it is none of the outer run's steps, and its tools get no call keys."""
    if journal is None:
        return TOOL_CALL.get() is not None
    if not journal.entered:
        journal.entered = True  # the durable run itself, beginning
        return False
    return True


@contextlib.contextmanager
def _outside_the_run(key: str | None = None) -> Iterator[None]:
    """Code that is none of the durable run's steps (a tool's body, a run begun inside the
    run), with `key` as the tool call key it sees."""
    outside, keyed = ACTIVE.set(None), TOOL_CALL.set(key)
    try:
        yield
    finally:
        TOOL_CALL.reset(keyed)
        ACTIVE.reset(outside)


def _outermost_run(sdk_run: Any) -> Any:
    async def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _nested(ACTIVE.get()):
            return await sdk_run(self, *args, **kwargs)
        with _outside_the_run():
            return await sdk_run(self, *args, **kwargs)

    return run


def _outermost_run_streamed(sdk_run_streamed: Any) -> Any:
    def run_streamed(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _nested(ACTIVE.get()):
            return sdk_run_streamed(self, *args, **kwargs)
        with _outside_the_run():  # its task starts in this context
            return sdk_run_streamed(self, *args, **kwargs)

    return run_streamed


def _journaled_get_model(sdk_get_model: Any) -> Any:
    def get_model(agent: Any, run_config: Any) -> Model:
        model = sdk_get_model(agent, run_config)
        journal = ACTIVE.get()
        if journal is None:
            return model
        return journal.models.setdefault(id(model), JournaledModel(model, journal))  # type: ignore[no-any-return]

    return get_model


def _journaled_invoke(sdk_invoke: Any) -> Any:
    async def invoke(*, function_tool: Any, context: Any, arguments: str) -> Any:
        journal = ACTIVE.get()
        call_id = getattr(context, "tool_call_id", None)
        if journal is None or not call_id:
            return await sdk_invoke(function_tool=function_tool, context=context, arguments=arguments)
        replayed = journal.replay_tool(call_id, function_tool)
        if replayed is not None:
            return _FunctionToolInvocationResult(replayed.output, is_sdk_generated_error=replayed.sdk_generated_error)
        turn = journal.model_responses
        with _outside_the_run(journal.tool_key(call_id)):  # its own runs (an agent as a tool) are not steps
            result = await sdk_invoke(function_tool=function_tool, context=context, arguments=arguments)
        if _paused_inside(context):  # an agent as a tool, waiting for an approval: not a result
            return result
        step = await journal.record_tool(call_id, turn, function_tool, ToolStep(result.output, result.is_sdk_generated_error))
        return _FunctionToolInvocationResult(step.output, is_sdk_generated_error=step.sdk_generated_error)

    return invoke


class JournaledModel(Model):
    """A model whose responses are journaled as they return, and replayed from the journal."""

    def __init__(self, model: Model, journal: RunJournal) -> None:
        self.model = model
        self.journal = journal

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        replayed = self.journal.replay_response()
        if replayed is not None:
            return replayed
        response = await self.model.get_response(*args, **kwargs)
        return await self.journal.record_response(response)

    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:  # type: ignore[override]
        replayed = self.journal.replay_response()
        if replayed is not None:
            yield _completed_event(replayed)
            return
        done_items: list[Any] = []
        async for event in self.model.stream_response(*args, **kwargs):
            if isinstance(event, ResponseOutputItemDoneEvent):
                done_items.append(event.item)
            elif isinstance(event, ResponseCompletedEvent):
                streamed = _streamed_response(event.response, done_items)
                journaled = await self.journal.record_response(streamed)
                if journaled is not streamed:  # an earlier attempt's, journaled first: the run goes on with it
                    event = _completed_event(journaled)
            yield event

    def get_retry_advice(self, request: Any) -> Any:
        return self.model.get_retry_advice(request)

    async def close(self) -> None:
        await self.model.close()

    async def _cleanup_on_run_end(self, owner: object) -> None:
        await self.model._cleanup_on_run_end(owner)

    def __getattr__(self, name: str) -> Any:  # what the SDK asks of a model beyond its interface
        return getattr(self.model, name)


def _paused_inside(context: Any) -> bool:
    """Whether the call was an agent as a tool whose run paused for an approval (the SDK keeps
    that run to resume it; its output is not the call's result)."""
    tool_call = getattr(context, "tool_call", None)
    if tool_call is None:
        return False
    nested = peek_agent_tool_run_result(tool_call, scope_id=get_agent_tool_state_scope(context))
    return bool(getattr(nested, "interruptions", None))


def _streamed_response(response: Response, done_items: list[Any]) -> ModelResponse:
    """The ModelResponse the SDK makes of a stream's completed event (run_loop does the same)."""
    return ModelResponse(
        output=list(response.output) or list(done_items),
        usage=_response_usage_to_usage(response.usage) if response.usage else Usage(requests=1),
        response_id=response.id,
        request_id=getattr(response, "_request_id", None),
    )


def _completed_event(response: ModelResponse) -> ResponseCompletedEvent:
    """A journaled response as the one event of a replayed stream: the SDK builds the turn from
    a stream's completed event, with the usage attached to it."""
    usage = ResponseUsage.model_construct(
        input_tokens=response.usage.input_tokens,
        output_tokens=response.usage.output_tokens,
        total_tokens=response.usage.total_tokens,
        input_tokens_details=response.usage.input_tokens_details,
        output_tokens_details=response.usage.output_tokens_details,
    )
    _attach_normalized_usage(usage, copy.deepcopy(response.usage))
    completed = Response.model_construct(
        id=response.response_id or "", object="response", created_at=0.0, model="", output=list(response.output),
        parallel_tool_calls=True, tool_choice="auto", tools=[], status="completed", usage=usage,
    )
    if response.request_id is not None:
        object.__setattr__(completed, "_request_id", response.request_id)
    return ResponseCompletedEvent.model_construct(type="response.completed", response=completed, sequence_number=0)
