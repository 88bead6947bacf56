"""Journaling benchmark: what a durable run's journal costs per step, and what a recovery costs.

    python bench/durable.py [--rounds N]

The run: the model (the local fake model server, through the real openai client) calls a tool
five times, one call per turn, then answers: 6 model responses and 5 tool outputs, 11 steps.
On PGlite and on PostgreSQL, median ms over N rounds, taken in turns so that each figure and its
baseline see the same moments of the machine:

- `Runner.run` with a timestep `Session` (the baseline);
- `run_agent(..., run_store=...)` with the same session: the same run, durable (started,
  every step journaled, recorded finished). (durable - baseline) / 11 is the cost per step;
- `RunStateStore.recover()` of that run after its process died just before its end: every
  step is in the journal, so nothing is asked of the model or run again; the time is the
  claim, the replay, the session written again, and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from agents import Agent, Runner, function_tool, set_tracing_disabled
from common import interleaved_medians, postgres_uri, print_columns, vacuum

from timestep import open_store
from timestep.run_state import RunStateStore
from timestep.runner import run_agent
from timestep.session import Session
from timestep.store import Store
from timestep.testing import FakeModelServer, RecordedRequest, Reply, call, text

TOOL_CALLS = 5
STEPS = 2 * TOOL_CALLS + 1


@function_tool
def lookup(n: int) -> str:
    """Look something up."""
    return f"record {n}: " + "details " * 20


def answer(request: RecordedRequest) -> Reply:
    """A tool call per turn until there are TOOL_CALLS outputs, then the answer."""
    outputs = sum(1 for item in request.body.get("input", []) if item.get("type") == "function_call_output")
    return call("lookup", {"n": outputs}) if outputs < TOOL_CALLS else text("found it all")


async def rows_for(name: str, store: Store, agent: Agent[Any], rounds: int) -> list[list[str]]:
    async def plain() -> None:
        await Runner.run(agent, "look it up", session=Session(f"bench-{uuid.uuid4()}", store=store))

    async def durable() -> None:
        run_id = f"bench-{uuid.uuid4()}"
        runs = RunStateStore(agent, run_id, store=store)
        await run_agent(agent, "look it up", Session(run_id, store=store), run_store=runs)

    async def recovery() -> dict[str, float]:
        run_id = f"bench-{uuid.uuid4()}"
        runs = RunStateStore(agent, run_id, store=store)
        await run_agent(agent, "look it up", Session(run_id, store=store), run_store=runs)
        # As if its process had died before recording the end: running, its lease expired.
        await store.execute(
            "UPDATE run_states SET status = 'running', final_output = NULL, lease_owner = 'died', "
            "lease_expires_at = now() - interval '1 second' WHERE run_id = $1 AND active", run_id,
        )
        begin = asyncio.get_running_loop().time()
        result = await runs.recover()
        elapsed = asyncio.get_running_loop().time() - begin
        assert result.final_output == "found it all"
        return {"recover": elapsed}

    medians = await interleaved_medians({"plain": plain, "durable": durable, "recovery": recovery}, rounds, warmup=5)
    per_step = (medians["durable"] - medians["plain"]) / STEPS
    return [
        [f"Runner.run + Session on {name}", f"{medians['plain']:.2f}", "", "", ""],
        [f"run_agent(run_store=) on {name}", f"{medians['durable']:.2f}", f"+{medians['durable'] - medians['plain']:.2f}", f"+{per_step:.2f}", ""],
        [f"recover() on {name}", "", "", "", f"{medians['recovery/recover']:.2f}"],
    ]


async def main(rounds: int) -> None:
    set_tracing_disabled(True)
    work = Path(tempfile.mkdtemp(prefix="timestep-bench-durable-"))
    os.environ.setdefault("TIMESTEP_CACHE_DIR", str(work / "cache"))
    stores = {"PGlite": await open_store(pglite_path=work / "pglite")}
    uri = postgres_uri()
    if uri:
        stores["PostgreSQL"] = await open_store(uri)
    rows = [["", "run ms", "durable - plain", "per step", "recovery ms"]]
    with FakeModelServer([answer] * (3 * (rounds + 10) * (TOOL_CALLS + 1) * len(stores))) as server:
        agent = Agent(name="researcher", instructions="look things up", model=server.responses_model(), tools=[lookup])
        try:
            for name, store in stores.items():
                rows.extend(await rows_for(name, store, agent, rounds))
        finally:
            for store in stores.values():
                await store.execute("DELETE FROM run_states WHERE run_id LIKE 'bench-%'")
                await store.execute("DELETE FROM agent_sessions WHERE session_id LIKE 'bench-%'")
                await vacuum(store, "run_states", "run_steps", "agent_sessions", "agent_messages")
                await store.aclose()
    print(
        f"timestep journaling benchmark: {os.cpu_count()} cores, Python {sys.version.split()[0]}; a run of "
        f"{TOOL_CALLS + 1} model responses and {TOOL_CALLS} tool outputs ({STEPS} steps) against the fake "
        f"model server; median ms of {rounds}"
    )
    print_columns(rows)
    if not uri:
        print("(no PostgreSQL: set PG_CONNECTION_URI for the PostgreSQL rows)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50)
    asyncio.run(main(parser.parse_args().rounds))
