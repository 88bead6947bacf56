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
from .advanced_session import MAIN, AdvancedSession
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
    await RunJournal.check_replayable(await runs.store(), runs.session_id)
    lease = await RunLease.claim(runs, None)
    return await run_claimed(
        lease, session, run_config=run_config, context=context,
        max_turns=DEFAULT_MAX_TURNS if max_turns is None else max_turns, hooks=hooks,
    )


async def run_claimed(lease: RunLease, session: Any = None, **options: Any) -> RunResult:
    """Run a run this process has claimed (`lease`) to its end or next pause, from its journal:
    from its input if it never paused, else from its latest state, in `session` (default: the
    one its journal names, `journaled_session`). A run that cannot be resumed here is recorded
    as failed, and let go. `options` are run_held's."""
    try:
        input = await lease.runs.resume_input()
        if session is None:
            session = await journaled_session(lease)
    except BaseException as error:
        await lease.fail(error)
        raise
    result = await run_held(lease.runs.agent, input, session, False, lease, **options)
    assert isinstance(result, RunResult)
    return result


async def journaled_session(lease: RunLease) -> Session:
    """The session a recovered run goes on in: the one its journal says it wrote to (an
    AdvancedSession on the branch it wrote to, if it was one), else the session named by its
    run id (as the README's runs are)."""
    written = await RunJournal.session_of(lease.store, lease.state_id)
    if written is None:
        return Session(lease.runs.session_id, store=lease.store)
    session_id, branch = written
    if branch is None:
        return Session(session_id, store=lease.store)
    session = AdvancedSession(session_id, store=lease.store)
    if branch != MAIN:
        await session.switch_to_branch(branch)
    return session
