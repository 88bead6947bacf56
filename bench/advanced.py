"""Advanced-session benchmark: branching a long conversation, and reading the branch.

    python bench/advanced.py [--rounds N]

A 1,000-item session (100 user turns of 10 items each) is prepared once per implementation.
Each round creates a branch from turn 50 (copying the ~490 items of turns 1-49) and reads the
branch back with `get_items()`; the branch is then deleted, untimed, so every round sees the
same session. The implementations take turns round by round. Median ms for:
- timestep `AdvancedSession` on PGlite (the sidecar) and on PostgreSQL;
- the SDK's `AdvancedSQLiteSession` on a file, the baseline each is divided by.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from agents.extensions.memory import AdvancedSQLiteSession

from common import SESSION_TABLES, interleaved_medians, postgres_uri, print_columns, vacuum

from timestep import AdvancedSession, open_store

TURNS, ITEMS_PER_TURN, BRANCH_TURN = 100, 10, 50
REFERENCE = "AdvancedSQLiteSession, file"


def conversation() -> list[dict[str, Any]]:
    """1,000 items: each turn a user message, then tool calls, outputs and an answer."""
    items: list[dict[str, Any]] = []
    for turn in range(1, TURNS + 1):
        items.append({"role": "user", "content": f"question {turn}: " + "what about the order status " * 3})
        for n in range(4):
            items.append({"type": "function_call", "call_id": f"c{turn}_{n}", "name": "lookup_order", "arguments": '{"order_id": "A-1234"}'})
            items.append({"type": "function_call_output", "call_id": f"c{turn}_{n}", "output": "shipped " * 10})
        items.append({"role": "assistant", "content": f"answer {turn}: " + "it has shipped and arrives soon " * 3})
    assert len(items) == TURNS * ITEMS_PER_TURN
    return items


async def prepared(session: Any) -> Callable[[], Awaitable[dict[str, float]]]:
    """Write the conversation into `session`; return one timed round: create a branch from
    turn 50 and read it back (seconds of each), then delete it, untimed."""
    items = conversation()
    for start in range(0, len(items), 100):  # written in batches, as turns would be
        await session.add_items(items[start : start + 100])
    numbers = itertools.count()

    async def branch_and_read() -> dict[str, float]:
        name = f"what-if-{next(numbers)}"
        begin = time.perf_counter()
        await session.create_branch_from_turn(BRANCH_TURN, name)
        created = time.perf_counter()
        items = await session.get_items()
        read = time.perf_counter()
        assert len(items) == (BRANCH_TURN - 1) * ITEMS_PER_TURN
        await session.switch_to_branch("main")
        await session.delete_branch(name)
        return {"create": created - begin, "read": read - created}

    return branch_and_read


async def main(rounds: int, warmup: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="timestep-bench-advanced-"))
    os.environ.setdefault("TIMESTEP_CACHE_DIR", str(work / "cache"))
    uri = postgres_uri()
    operations: dict[str, Callable[[], Awaitable[dict[str, float]]]] = {}
    async with AsyncExitStack() as stack:
        pglite = await stack.enter_async_context(await open_store(pglite_path=work / "pglite"))
        for _ in range(2000):  # PGlite's JIT warm-up (see bench/store.py)
            await pglite.fetchval("SELECT 1")
        sqlite = AdvancedSQLiteSession(session_id="bench", db_path=work / "sdk.sqlite", create_tables=True)
        stack.callback(sqlite.close)
        operations[REFERENCE] = await prepared(sqlite)
        operations["AdvancedSession, PGlite"] = await prepared(AdvancedSession(f"bench-{uuid.uuid4()}", store=pglite))
        if uri:
            server = await stack.enter_async_context(await open_store(uri))
            session = AdvancedSession(f"bench-{uuid.uuid4()}", store=server)
            stack.push_async_callback(vacuum, server, *SESSION_TABLES)  # callbacks run last first
            stack.push_async_callback(session.clear_session)
            operations["AdvancedSession, PostgreSQL"] = await prepared(session)
        medians = await interleaved_medians(operations, rounds, warmup)
    results = {name: (medians[f"{name}/create"], medians[f"{name}/read"]) for name in operations}

    print(
        f"timestep advanced-session benchmark: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"a {TURNS * ITEMS_PER_TURN}-item session, branch from turn {BRANCH_TURN}; median ms of {rounds} after {warmup} warm-up"
    )
    reference = results[REFERENCE]
    header = ["implementation", "create_branch_from_turn", "get_items on the branch", "vs AdvancedSQLiteSession"]
    rows = [header]
    for name, (create, read) in results.items():
        ratio = "" if name == REFERENCE else f"{create / reference[0]:.2f}x / {read / reference[1]:.2f}x"
        rows.append([name, f"{create:.2f}", f"{read:.2f}", ratio])
    print_columns(rows)
    if not uri:
        print("(no PostgreSQL: set PG_CONNECTION_URI for the PostgreSQL row)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.warmup))
