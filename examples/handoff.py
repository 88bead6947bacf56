"""Pause in Python, finish in Node. A durable run pauses for approval in Python; the JavaScript
Agents SDK loads it, approves and finishes it (resume.mjs, with the same agent and tool names);
Python then sees the run finished, and refuses to run it again.

    npm ci                      # in the repository, once: @openai/agents for resume.mjs
    python examples/handoff.py

On the embedded database, Node reaches it through this process's sidecar, which stays open
while Node runs; on PostgreSQL (`PG_CONNECTION_URI`) both connect to the server.
"""

import asyncio
import sys
import uuid
from pathlib import Path

from bank import banker

from timestep import RunStateStore, run_agent
from timestep.errors import RunNotResumable
from timestep.store.node import find_node

RESUME = Path(__file__).with_name("resume.mjs")


async def main() -> None:
    run_id = f"handoff-{uuid.uuid4()}"
    runs = RunStateStore(agent=banker, session_id=run_id)
    result = await run_agent(banker, "send 5", None, run_store=runs)
    print(f"python: run {run_id} waits for {[item.name for item in result.interruptions]}")

    node = await asyncio.create_subprocess_exec(find_node(), str(RESUME), run_id)
    if await node.wait() != 0:
        sys.exit(f"resume.mjs exited {node.returncode}")

    run = await RunStateStore.find_run(run_id)
    print(f"python: the run is {run.status}: {run.final_output!r}")
    try:
        await runs.load()
    except RunNotResumable as refused:
        print(f"python: {refused}")


if __name__ == "__main__":
    asyncio.run(main())
