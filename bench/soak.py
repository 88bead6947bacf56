"""Soak benchmark: does the embedded database stay small and fast under churn?

    python bench/soak.py [--seconds 180] [--window 20]

PGlite runs single-user PostgreSQL, with no autovacuum; the sidecar vacuums the tables it has
written instead. This runs, on one PGlite directory for a few minutes, what a busy agent
does to its store:
- session turns (`get_items` + `add_items` of 3) on 20 sessions, each trimmed back to 30
  items with `pop_item` once it passes 60, and cleared now and then;
- durable-run cycles: a paused run saved, loaded, approved (a decision recorded) and saved
  again as the run goes on, and cleared when done.
For each window it prints the database's size, its WAL's, the two tables' sizes, and the median, 99th
percentile and worst latency of each operation. The first window is the baseline: a store
that keeps up shows the same figures in the last one. Then the sidecar is killed (SIGKILL)
and the time to the next first query, PostgreSQL's crash recovery included, is printed
beside a clean reopen's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from agents import Agent, set_tracing_disabled
from common import first_query_s, print_columns
from runs import paused_state
from session import history_item

from timestep import open_store
from timestep.run_state import RunStateStore
from timestep.session import Session
from timestep.store import Store

SESSIONS = 20


async def sizes(store: Store) -> dict[str, float]:
    row = await store.fetchrow(
        "SELECT pg_database_size(current_database()) AS db, (SELECT sum(size) FROM pg_ls_waldir()) AS wal, "
        "pg_total_relation_size('agent_messages') AS messages, pg_total_relation_size('run_states') AS runs"
    )
    assert row is not None
    return {name: value / 2**20 for name, value in row.items()}


class Window:
    """Latencies of each operation during one stretch of the run."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}

    async def timed(self, name: str, operation: Any) -> Any:
        begin = time.perf_counter()
        result = await operation
        self.times.setdefault(name, []).append((time.perf_counter() - begin) * 1000)
        return result

    def row(self, name: str) -> str:
        values = sorted(self.times.get(name, [0.0]))
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        return f"{statistics.median(values):.2f} / {p99:.2f} / {values[-1]:.1f}"


async def session_turn(window: Window, session: Session, turn: int) -> None:
    items = await window.timed("turn", session.get_items())
    await window.timed("turn", session.add_items([history_item(turn + n) for n in range(3)]))
    if len(items) > 60:
        for _ in range(len(items) - 30):
            await window.timed("pop", session.pop_item())
    if turn % 500 == 499:
        await window.timed("clear", session.clear_session())


async def run_cycle(window: Window, store: Store, agent: Agent[Any], state: Any) -> None:
    runs = RunStateStore(agent, f"soak-{uuid.uuid4()}", store=store)
    await window.timed("save", runs.save(state))
    loaded = await window.timed("load", runs.load())
    for item in loaded.get_interruptions():
        loaded.approve(item)
    await window.timed("save", runs.save(loaded))
    await window.timed("save", runs.save(loaded))
    await window.timed("clear", runs.clear())


async def main(seconds: float, window_seconds: float) -> None:
    set_tracing_disabled(True)
    work = Path(tempfile.mkdtemp(prefix="timestep-bench-soak-"))
    os.environ.setdefault("TIMESTEP_CACHE_DIR", str(work / "cache"))
    agent, state = await paused_state(10)
    rows: list[list[str]] = []
    async with await open_store(pglite_path=work / "pglite") as store:
        sessions = [Session(f"soak-{n}", store=store) for n in range(SESSIONS)]
        started = time.monotonic()
        turn = 0
        while time.monotonic() - started < seconds:
            window = Window()
            window_end = min(time.monotonic() + window_seconds, started + seconds)
            while time.monotonic() < window_end:
                await session_turn(window, sessions[turn % SESSIONS], turn)
                if turn % 4 == 0:
                    await run_cycle(window, store, agent, state)
                turn += 1
            size = await sizes(store)
            rows.append([
                f"{time.monotonic() - started:.0f}", f"{turn}", f"{size['db']:.1f}", f"{size['wal']:.0f}", f"{size['messages']:.2f}",
                f"{size['runs']:.2f}", window.row("turn"), window.row("save"), window.row("load"), window.row("pop"),
            ])
            print("  ".join(rows[-1]), file=sys.stderr, flush=True)  # progress
        sidecar = store.sidecar  # type: ignore[attr-defined]
        os.kill(sidecar.link.ready.pid, signal.SIGKILL)
        sidecar.link.process.wait()
    recovered = await first_query_s(work / "pglite")
    clean = await first_query_s(work / "pglite")
    print(f"timestep soak benchmark: {os.cpu_count()} cores, Python {sys.version.split()[0]}; PGlite, durable; "
          f"{seconds:.0f} s in windows of {window_seconds:.0f} s; latencies in ms as median / p99 / worst")
    header = ["s", "turns", "db MB", "WAL MB", "messages MB", "run_states MB", "turn (get / add)", "save", "load", "pop"]
    print_columns([header, *rows])
    first, last = rows[0], rows[-1]
    print(f"first query after the sidecar was killed: {recovered:.2f} s (crash recovery); after a clean close: {clean:.2f} s")
    print(f"WAL at most {max(float(row[3]) for row in rows):.0f} MB; last window / first: db size {float(last[2]) / float(first[2]):.2f}x, "
          f"turn median {float(last[6].split()[0]) / float(first[6].split()[0]):.2f}x, "
          f"save median {float(last[7].split()[0]) / float(first[7].split()[0]):.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--window", type=float, default=20)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.seconds, arguments.window))
