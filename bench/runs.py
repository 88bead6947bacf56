"""Durable-run benchmark: saving and loading a paused run, beside serialization alone.

    python bench/runs.py [--rounds N]

For a run paused for approval after 10 and after 100 turns (each turn a tool call and its
output), measures, median ms, each operation run in turns with its floor:
- the floor: `RunState.to_json()` (what a save must do) and `RunState.from_json()` (a load);
- `RunStateStore.save()` of a paused run (a new run each round) and `RunStateStore.load()`,
  on PGlite (durable, the default: a save is answered once its WAL is fsynced; and relaxed)
  and on PostgreSQL.
The store's overhead is what it adds to the floor (store - floor); the whole operation
against the floor (store / floor) is printed beside it.

Then a durable run's lifecycle (`run_agent(..., run_store=...)`) against the same run made by
a plain `Runner.run` with the same scripted model, on PGlite and on PostgreSQL: a new run to
its end (started, its model response journaled, recorded finished) and a paused run resumed to
its end (claimed, its tool output and model response journaled, recorded finished); their sum
is the lifecycle of a run with one pause.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agents import Agent, Runner, function_tool
from agents.run_state import RunState
from agents.testing import ScriptedModel, assistant_message, function_call
from common import interleaved_medians, postgres_uri, print_columns, vacuum

from timestep import open_store
from timestep.run_state import RunStateStore
from timestep.runner import run_agent
from timestep.store import Store


@function_tool
def lookup(n: int) -> str:
    """Look something up."""
    return f"record {n}: " + "details " * 20


@function_tool(needs_approval=True)
def wire_money(amount: float) -> str:
    """Send money."""
    return "sent"


async def paused_state(turns: int) -> tuple[Agent[Any], RunState[Any]]:
    steps = [[function_call("lookup", {"n": n}, call_id=f"call_{n}")] for n in range(turns - 1)]
    steps.append([function_call("wire_money", {"amount": 5}, call_id="call_pay")])
    agent = Agent(name="banker", instructions="help", model=ScriptedModel(steps), tools=[lookup, wire_money])
    result = await Runner.run(agent, "look things up, then pay", max_turns=turns + 5)
    assert len(result.interruptions) == 1
    return agent, result.to_state()


async def main(rounds: int) -> None:
    from agents import set_tracing_disabled

    set_tracing_disabled(True)
    work = Path(tempfile.mkdtemp(prefix="timestep-bench-runs-"))
    os.environ.setdefault("TIMESTEP_CACHE_DIR", str(work / "cache"))
    stores = {
        "PGlite": await open_store(pglite_path=work / "pglite"),
        "PGlite relaxed": await open_store(pglite_path=work / "relaxed", durability="relaxed"),
    }
    uri = postgres_uri()
    if uri:
        stores["PostgreSQL"] = await open_store(uri)
    rows = []
    try:
        for turns in (10, 100):
            agent, state = await paused_state(turns)
            document = state.to_json()
            size_kb = len(str(document)) / 1024

            async def to_json() -> None:
                state.to_json()

            async def from_json() -> None:
                await RunState.from_json(agent, document)

            saves: dict[str, Callable[[], Awaitable[Any]]] = {"floor": to_json}
            loads: dict[str, Callable[[], Awaitable[Any]]] = {"floor": from_json}
            for name, store in stores.items():
                # Each save is a new paused run (a run is saved a handful of times, not hundreds).
                saves[name] = lambda store=store: RunStateStore(agent, f"bench-{uuid.uuid4()}", store=store).save(state)
                runs = RunStateStore(agent, f"bench-{uuid.uuid4()}", store=store)
                await runs.save(state)
                loads[name] = runs.load
            save = await interleaved_medians(saves, rounds)
            load = await interleaved_medians(loads, rounds)
            rows.append([f"{turns} turns (~{size_kb:.0f} KB)", "to_json / from_json (floor)", f"{save['floor']:.2f}", f"{load['floor']:.2f}", "", "", "", ""])
            for name in stores:
                rows.append(
                    ["", f"RunStateStore on {name}", f"{save[name]:.2f}", f"{load[name]:.2f}",
                     f"{save[name] / save['floor']:.2f}x", f"{load[name] / load['floor']:.2f}x",
                     f"{_overhead(save, name):.2f}x", f"{_overhead(load, name):.2f}x"]
                )
            for store in stores.values():
                await store.execute("DELETE FROM run_states WHERE run_id LIKE 'bench-%'")
                await vacuum(store, "run_states")
    finally:
        for store in stores.values():
            await store.aclose()

    print(f"timestep durable-run benchmark: {os.cpu_count()} cores, Python {sys.version.split()[0]}; median ms of {rounds}")
    header = ["paused run", "what", "save ms", "load ms", "save / floor", "load / floor", "overhead: save", "load"]
    print_columns([header, *rows])
    print()
    print("a durable run's lifecycle (run_agent with run_store) over a plain Runner.run, same scripted model; median ms")
    print_columns(await lifecycle_rows(work, uri, rounds))
    if not uri:
        print("(no PostgreSQL: set PG_CONNECTION_URI for the PostgreSQL rows)")


async def lifecycle_rows(work: Path, uri: str | None, rounds: int) -> list[list[str]]:
    """Per store: a new run to its end (started, then recorded finished) and a paused run
    resumed to its end (claimed, then recorded finished), each beside the same run made by a
    plain Runner.run; the difference is what the lifecycle costs."""
    model = ScriptedModel([[assistant_message("done")]] * (8 * (rounds + 10)))
    agent = Agent(name="banker", instructions="help", model=model, tools=[wire_money])
    pauser = Agent(name="banker", instructions="help", model=ScriptedModel([[function_call("wire_money", {"amount": 5}, call_id="call_pay")]]), tools=[wire_money])
    paused = (await Runner.run(pauser, "pay 5")).to_state().to_json()

    async def approved(state: RunState[Any]) -> RunState[Any]:
        state.approve(state.get_interruptions()[0])
        return state

    async def plain_new() -> None:
        await Runner.run(agent, "hi")

    async def plain_resume() -> dict[str, float]:
        state = await approved(await RunState.from_json(agent, paused))
        begin = time.perf_counter()
        await Runner.run(agent, state)
        return {"resume": time.perf_counter() - begin}

    stores = {"PGlite": await open_store(pglite_path=work / "lifecycle")}
    if uri:
        stores["PostgreSQL"] = await open_store(uri)
    rows = [["", "new run to its end", "", "resumed run to its end", "", "lifecycle of a run with one pause"]]
    try:
        # Each store on its own, beside the plain runs it is compared with: a figure and its
        # baseline take turns, round by round, and nothing else runs between them.
        for name, store in stores.items():
            async def durable_new(store: Store = store) -> None:
                await run_agent(agent, "hi", run_store=RunStateStore(agent, f"bench-{uuid.uuid4()}", store=store))

            async def durable_resume(store: Store = store) -> dict[str, float]:
                runs = RunStateStore(agent, f"bench-{uuid.uuid4()}", store=store)
                await runs.save(await RunState.from_json(agent, paused))
                state = await approved(await runs.load())
                begin = time.perf_counter()
                await run_agent(agent, state, run_store=runs)
                return {"resume": time.perf_counter() - begin}

            medians = await interleaved_medians(
                {"plain new": plain_new, "plain": plain_resume, "durable new": durable_new, "durable": durable_resume},
                rounds, warmup=10,
            )
            started = medians["durable new"] - medians["plain new"]
            resumed = medians["durable/resume"] - medians["plain/resume"]
            rows.append([f"plain Runner.run (beside {name})", f"{medians['plain new']:.2f}", "", f"{medians['plain/resume']:.2f}", "", ""])
            rows.append([
                f"run_agent on {name}", f"{medians['durable new']:.2f}", f"+{started:.2f}",
                f"{medians['durable/resume']:.2f}", f"+{resumed:.2f}", f"+{started + resumed:.2f} ms",
            ])
    finally:
        for store in stores.values():
            await store.execute("DELETE FROM run_states WHERE run_id LIKE 'bench-%'")
            await vacuum(store, "run_states")
            await store.aclose()
    return rows


def _overhead(medians: dict[str, float], name: str) -> float:
    """What the store adds to the floor, in floors."""
    return (medians[name] - medians["floor"]) / medians["floor"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50)
    asyncio.run(main(parser.parse_args().rounds))
