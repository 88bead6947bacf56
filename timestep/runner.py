"""`run_agent` and `consume_result`: Runner.run / run_streamed with a session and prefix routing."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Awaitable
from typing import Any, TypeVar

from agents import Agent, RunConfig, Runner, RunResult, RunResultStreaming
from agents.memory import Session as SessionProtocol
from agents.models.multi_provider import MultiProvider
from agents.run import DEFAULT_MAX_TURNS
from agents.run_state import RunState

from . import journaled
from .durable_run import RunLease
from .errors import RunCancelled, RunNotResumable
from .journal import ACTIVE, RunJournal
from .models import MultiModelProvider
from .run_state import RunStateStore
from .advanced_session import AdvancedSession
from .session import Session

_Result = TypeVar("_Result", RunResult, RunResultStreaming)
# The sessions whose writes a durable run journals with their items: timestep's own, unless a
# subclass writes its own way.
_JOURNALED_WRITES = (Session.add_items, AdvancedSession.add_items)
# The attribute run_agent sets on a durable streamed result: its lease, which consume_result ends.
_LEASE = "_timestep_lease"

_default_provider: MultiModelProvider | None = None
_default_provider_lock = threading.Lock()


def default_model_provider() -> MultiModelProvider:
    """One MultiModelProvider per process, so clients are reused across runs."""
    global _default_provider
    with _default_provider_lock:
        if _default_provider is None:
            _default_provider = MultiModelProvider()
        return _default_provider


def _with_routing(run_config: RunConfig | None) -> RunConfig:
    """The run config, with prefix routing unless it names a provider of its own.

    The SDK's default `MultiProvider` (which RunConfig() gets) is extended, not replaced: its
    OpenAI settings and prefix map are kept, and `ollama/` and custom prefixes are added.
    """
    if run_config is None:
        return RunConfig(model_provider=default_model_provider())
    provider = run_config.model_provider
    if type(provider) is MultiProvider:
        return dataclasses.replace(run_config, model_provider=MultiModelProvider.extending(provider))
    return run_config


async def run_agent(
    agent: Agent[Any],
    input: str | list[Any] | RunState[Any],
    session: SessionProtocol | None = None,
    stream: bool = False,
    *,
    run_store: RunStateStore | None = None,
    run_config: RunConfig | None = None,
    context: Any = None,
    max_turns: int = DEFAULT_MAX_TURNS,
    hooks: Any = None,
) -> RunResult | RunResultStreaming:
    """Run `agent` on `input` (text, input items, or a RunState to resume) with `session`.

    Returns the SDK's result unchanged: a `RunResult`, or with `stream=True` a
    `RunResultStreaming` (drain it with `consume_result`). SDK exceptions propagate unchanged.

    With `run_store`, the run is durable: it is started (new input) or claimed (a RunState)
    before anything runs, or `RunNotResumable` is raised and nothing runs; held by this
    process while it runs; and recorded as it ends: `interrupted` with its state, `finished`
    with its output, or `failed` with the error.
    """
    lease = None
    if run_store is not None:
        lease = await (RunLease.claim(run_store, input) if isinstance(input, RunState) else RunLease.start(run_store, input))
    return await run_held(
        agent, input, session, stream, lease,
        run_config=run_config, context=context, max_turns=max_turns, hooks=hooks,
    )


async def run_held(
    agent: Agent[Any],
    input: str | list[Any] | RunState[Any],
    session: SessionProtocol | None,
    stream: bool,
    lease: RunLease | None,
    *,
    run_config: RunConfig | None = None,
    context: Any = None,
    max_turns: int = DEFAULT_MAX_TURNS,
    hooks: Any = None,
) -> RunResult | RunResultStreaming:
    """`run_agent` for a run this process already holds under `lease` (or none): run it, and
    record how it ends (timestep.worker claims its runs in bulk, then runs each through this)."""
    config = _with_routing(run_config)
    journal = None
    if lease is not None:
        try:
            journal = await _journal(lease, session)
        except BaseException as error:
            await lease.fail(error)
            raise
    if stream:
        journaling = ACTIVE.set(journal)  # the streamed run's task starts in this context
        try:
            streamed = Runner.run_streamed(
                agent, input, context=context, max_turns=max_turns, hooks=hooks, run_config=config, session=session
            )
        except BaseException as error:
            if lease is not None:
                await lease.fail(error)
            raise
        finally:
            ACTIVE.reset(journaling)
        if lease is not None:
            setattr(streamed, _LEASE, lease)  # consume_result records how the stream ended
        return streamed
    return await _recorded(
        lease,
        _journaled(journal, Runner.run(agent, input, context=context, max_turns=max_turns, hooks=hooks, run_config=config, session=session)),
    )


async def _journal(lease: RunLease, session: SessionProtocol | None) -> RunJournal:
    """The journal of the segment `lease` holds: empty for a run just started; for a claimed
    one, what it did before (a recovery replays it), with its session writes undone. A
    timestep Session or AdvancedSession on the run's store is journaled with its writes, in
    one transaction each."""
    journaled.install()
    run_id = lease.runs.session_id
    if lease.claimed_from not in (None, "interrupted"):
        journal = await RunJournal.open(
            lease.store, run_id, lease.state_id, lease.owner,
            session_id=getattr(session, "session_id", None), after_failure=lease.claimed_from == "failed",
        )
    else:
        journal = RunJournal.new(lease.store, run_id, lease.state_id, lease.owner)
    if getattr(type(session), "add_items", None) in _JOURNALED_WRITES and await session.store() is lease.store:  # type: ignore[union-attr]
        journal.session = session
    return journal


async def _journaled(journal: RunJournal | None, run: Awaitable[_Result]) -> _Result:
    """Await `run` with `journal` as the journal of the steps it takes."""
    journaling = ACTIVE.set(journal)
    try:
        return await run
    finally:
        ACTIVE.reset(journaling)


async def consume_result(result: RunResult | RunResultStreaming) -> RunResult | RunResultStreaming:
    """Drain a streamed result's events and return it finished; return any other result as is.
    A durable streamed run is recorded here, as the stream ends."""
    if isinstance(result, RunResultStreaming):
        lease = getattr(result, _LEASE, None)
        if lease is not None:
            delattr(result, _LEASE)
        await _recorded(lease, _drained(result))
    return result


async def _drained(result: RunResultStreaming) -> RunResultStreaming:
    async for _ in result.stream_events():
        pass
    return result


async def _recorded(lease: RunLease | None, run: Awaitable[_Result]) -> _Result:
    """Await `run` (a run, or the draining of a streamed one) and, for a durable run, record
    how it ended on its `lease`: failed with the error it raised, else finished or paused."""
    try:
        result = await run
    except BaseException as error:
        if lease is not None:
            await lease.fail(error)
        lost = _lost_within(error)
        if lost is not None and lost is not error:  # the SDK wrapped it (a tool's error): say what happened
            raise lost from error
        raise
    if lease is not None:
        if _cancelled_before_its_end(result):
            # Stopped by the caller (RunResultStreaming.cancel): it did not finish. Recorded
            # failed, its state and journal kept, so that it can be retried or recovered.
            await lease.fail(RunCancelled("the run was cancelled before it ended"))
        else:
            await lease.finish(result)
    return result


def _cancelled_before_its_end(result: RunResult | RunResultStreaming) -> bool:
    """Whether a streamed run was cancelled, and so ended with neither an output nor a pause."""
    cancelled = getattr(result, "_cancel_mode", "none") != "none"
    return cancelled and result.final_output is None and not result.interruptions


def _lost_within(error: BaseException) -> RunNotResumable | None:
    """The RunNotResumable that `error` is, or was raised from: a run taken from this process
    (journal.lost) surfaces from inside a tool wrapped in the SDK's UserError."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, RunNotResumable):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
