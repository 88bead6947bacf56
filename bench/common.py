"""What the bench scripts share."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from timestep import open_store

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/test"
SESSION_TABLES = ("agent_sessions", "agent_messages", "message_structure", "session_ttl")


def postgres_uri() -> str | None:
    """PG_CONNECTION_URI, else the machine's local server if it answers, else None."""
    uri = os.environ.get("PG_CONNECTION_URI")
    if uri:
        return uri
    try:
        import psycopg

        psycopg.connect(LOCAL_PG, connect_timeout=3).close()
        return LOCAL_PG
    except Exception:
        return None


async def first_query_s(path: Path) -> float:
    """Seconds from opening the PGlite directory `path` (a sidecar started) to the answer of a first query."""
    begin = time.perf_counter()
    async with await open_store(pglite_path=path) as store:
        await store.fetchval("SELECT 1")
        return time.perf_counter() - begin


def print_columns(rows: Sequence[Sequence[object]]) -> None:
    """Rows (the first one a header) as left-aligned columns."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


async def interleaved_medians(
    operations: Mapping[str, Callable[[], Awaitable[Any]]], rounds: int, warmup: int = 5
) -> dict[str, float]:
    """Median ms of each operation, run in turns (one of each per round, the order rotating),
    so a figure and the baseline it is divided by see the same moments of a noisy machine.

    An operation that times its own phases returns them ({"create": seconds, ...}); they are
    reported as "name/phase" instead of the operation's whole time."""
    names = list(operations)
    times: dict[str, list[float]] = {}
    for round_number in range(warmup + rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            begin = time.perf_counter()
            phases = await operations[name]()
            elapsed = time.perf_counter() - begin
            if round_number < warmup:
                continue
            if isinstance(phases, Mapping):
                for phase, seconds in phases.items():
                    times.setdefault(f"{name}/{phase}", []).append(seconds)
            else:
                times.setdefault(name, []).append(elapsed)
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


async def vacuum(store: Any, *tables: str) -> None:
    """VACUUM (ANALYZE) on PostgreSQL, as autovacuum would. A server may run without autovacuum
    (this machine's CI configuration turns it off): after a benchmark deletes what it wrote, so
    that the next run does not measure the dead rows (once, 4 million of them made a session
    turn 7x slower); and after it prepares its data, so that the planner knows the tables' sizes
    (statistics of an empty table once made a turn at a history of 1,000 items 12x slower).
    PGlite's sidecar runs its own; its directories here are temporary."""
    if store.backend == "postgres":
        await store.execute_script(f"VACUUM (ANALYZE) {', '.join(tables)}")
