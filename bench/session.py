"""Session benchmark: the per-turn cost of conversation history, side by side.

    python bench/session.py [--turns N]

One agent turn costs the session one `get_items()` and one `add_items()` of 3 items. This
measures that cost (median per turn) at history lengths 10, 100 and 1,000 for:
- timestep `Session` on PGlite (the sidecar), durable (the default: a write is answered once
  its WAL is fsynced) and relaxed, and on PostgreSQL;
- the SDK's `SQLiteSession` on a file, with its defaults (WAL, synchronous FULL: durable too);
- the SDK's `SQLAlchemySession` on the same PostgreSQL, through asyncpg.
The ratios compare each with its baseline: PGlite with SQLiteSession, both durable; PostgreSQL
with SQLAlchemySession on the same server.
Each measured turn runs on its own session, prepared (untimed) with exactly that much history,
so no deletes are involved: PGlite runs no autovacuum, and popping items to hold a history at
its length would measure the dead rows that leaves, not a turn. The implementations take
their turns in turns, round by round, so a figure and its baseline see the same moments of
a noisy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from agents.memory import SessionABC, SQLiteSession

from common import SESSION_TABLES, interleaved_medians, postgres_uri, print_columns, vacuum

from timestep import open_store
from timestep.session import Session

LENGTHS = (10, 100, 1000)


def history_item(n: int) -> dict[str, Any]:
    """An item the size of a typical short message (~200 bytes of JSON)."""
    if n % 3 == 2:
        return {"type": "function_call", "call_id": f"call_{n}", "name": "lookup_order", "arguments": '{"order_id": "A-1234", "include": ["items", "status"]}'}
    role = "user" if n % 3 == 0 else "assistant"
    return {"role": role, "content": f"message {n}: " + "the quick brown fox jumps over the lazy dog " * 3}


async def per_turn_ms(
    makers: dict[str, Callable[[str], SessionABC]], length: int, turns: int, warmup: int, prepared_hook: Callable[[], Awaitable[None]]
) -> dict[str, float]:
    """Median ms per turn of each implementation, their turns taken in turns (common.py).
    `prepared_hook` runs once the sessions are prepared, before the first timed turn."""
    history = [history_item(n) for n in range(length)]
    new_items = [history_item(n) for n in range(length, length + 3)]
    prepared: dict[str, Iterator[SessionABC]] = {}
    for name, make in makers.items():
        sessions = [make(f"bench-{length}-{uuid.uuid4()}") for _ in range(warmup + turns)]
        for session in sessions:
            await session.add_items(history)
        prepared[name] = iter(sessions)
    await prepared_hook()

    def turn(name: str) -> Callable[[], Awaitable[None]]:
        async def one_turn() -> None:
            session = next(prepared[name])
            got = await session.get_items()
            await session.add_items(new_items)
            assert len(got) == length

        return one_turn

    return await interleaved_medians({name: turn(name) for name in makers}, turns, warmup)


async def main(turns: int, warmup: int) -> None:
    results: dict[str, dict[int, float]] = {}
    work = Path(tempfile.mkdtemp(prefix="timestep-bench-session-"))
    os.environ.setdefault("TIMESTEP_CACHE_DIR", str(work / "cache"))
    uri = postgres_uri()
    async with AsyncExitStack() as stack:
        makers: dict[str, Callable[[str], SessionABC]] = {}
        pglite = await stack.enter_async_context(await open_store(pglite_path=work / "pglite"))
        makers["Session, PGlite"] = lambda sid: Session(sid, store=pglite)
        relaxed = await stack.enter_async_context(await open_store(pglite_path=work / "relaxed", durability="relaxed"))
        makers["Session, PGlite relaxed"] = lambda sid: Session(sid, store=relaxed)
        sqlite_sessions: list[SQLiteSession] = []
        makers["SQLiteSession, file"] = lambda sid: _track(sqlite_sessions, SQLiteSession(sid, work / "sdk.sqlite"))
        if uri:
            server = await stack.enter_async_context(await open_store(uri))
            makers["Session, PostgreSQL"] = lambda sid: Session(sid, store=server)
            engine = _sqlalchemy_engine(uri, stack)
            makers["SQLAlchemySession, PostgreSQL"] = lambda sid: _sqlalchemy_session(sid, engine)
        async def analyze() -> None:  # what autovacuum would have done by now, if the server runs it
            if uri:
                await vacuum(server, *SESSION_TABLES, "bench_sa_sessions", "bench_sa_messages")

        for n in LENGTHS:
            medians = await per_turn_ms(makers, n, turns if n < 1000 else turns // 3, warmup, analyze)
            for name, median in medians.items():
                results.setdefault(name, {})[n] = median
        for sqlite_session in sqlite_sessions:
            sqlite_session.close()
        if uri:
            await server.execute_script("DROP TABLE IF EXISTS bench_sa_messages; DROP TABLE IF EXISTS bench_sa_sessions;")
            await server.execute("DELETE FROM agent_sessions WHERE session_id LIKE 'bench-%'")
            await vacuum(server, *SESSION_TABLES)

    print(f"timestep session benchmark: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
          f"median ms per turn (get_items + add_items of 3), {warmup} warm-up + {turns} measured turns per length "
          f"({turns // 3} at 1,000)")
    header = ["implementation", *(f"history {n}" for n in LENGTHS)]
    rows = [[name, *(f"{results[name][n]:.3f}" for n in LENGTHS)] for name in results]

    def ratio_row(label: str, ours: str, theirs: str) -> None:
        if ours in results and theirs in results:
            rows.append([label, *(f"{results[ours][n] / results[theirs][n]:.2f}x" for n in LENGTHS)])

    ratio_row("PGlite / SQLite file, both durable", "Session, PGlite", "SQLiteSession, file")
    ratio_row("PGlite durable / relaxed", "Session, PGlite", "Session, PGlite relaxed")
    ratio_row("ours / SQLAlchemy on PG", "Session, PostgreSQL", "SQLAlchemySession, PostgreSQL")
    print_columns([header, *rows])
    if not uri:
        print("(no PostgreSQL: set PG_CONNECTION_URI for the PostgreSQL rows)")


def _track(sessions: list[SQLiteSession], session: SQLiteSession) -> SQLiteSession:
    sessions.append(session)
    return session


def _sqlalchemy_engine(uri: str, stack: AsyncExitStack) -> Any:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(uri.replace("postgresql://", "postgresql+asyncpg://", 1).replace("postgres://", "postgresql+asyncpg://", 1))
    stack.push_async_callback(engine.dispose)
    return engine


def _sqlalchemy_session(session_id: str, engine: Any) -> SessionABC:
    from agents.extensions.memory import SQLAlchemySession

    return SQLAlchemySession(
        session_id, engine=engine, create_tables=True,
        sessions_table="bench_sa_sessions", messages_table="bench_sa_messages",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=300, help="measured turns per length (a third at 1,000)")
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.warmup))
