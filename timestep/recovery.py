"""`recover_run`: take a durable run back after its process died, and finish it from its journal.

`RunStateStore.recover()` calls this; it lives apart because it runs agents (timestep.runner),
which itself imports RunStateStore.
"""

from __future__ import annotations

from typing import Any

from agents import RunResult
from agents.run import DEFAULT_MAX_TURNS

from .durable_run import RunLease
from .journal import RunJournal
from .run_state import RunStateStore
from .runner import run_held
from .session import Session


async def recover_run(
    runs: RunStateStore,
    session: Any = None,
    *,
    run_config: Any = None,
    context: Any = None,
    max_turns: int | None = None,
    hooks: Any = None,
) -> RunResult:
    """Claim `runs`' run whatever resumable state it is in, and run it from its journal (see
    `RunStateStore.recover`)."""
    lease = await RunLease.claim(runs, None)
    try:
        input = await runs.resume_input()
    except BaseException as error:  # a state that cannot be resumed here: recorded, let go
        await lease.fail(error)
        raise
    if session is None:
        session = await journaled_session(lease)
    result = await run_held(
        runs.agent, input, session, False, lease, run_config=run_config, context=context,
        max_turns=DEFAULT_MAX_TURNS if max_turns is None else max_turns, hooks=hooks,
    )
    assert isinstance(result, RunResult)
    return result


async def journaled_session(lease: RunLease) -> Session:
    """The session a recovered run goes on in: the one its journal says it wrote to, else the
    session named by its run id (as the README's runs are)."""
    session_id = await RunJournal.session_of(lease.store, lease.state_id)
    return Session(session_id or lease.runs.session_id, store=lease.store)
