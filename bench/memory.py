"""Memory benchmark: recall latency as the number of remembered facts grows.

    python bench/memory.py [--queries N]

For 1,000 and 100,000 facts in one scope (sentences drawn from a 3,000-word vocabulary, a
tenth with a subject), measures the median ms of `Memory.recall()` for two- and three-word
queries (limit 10), on PGlite and on PostgreSQL. The facts are loaded with one INSERT per
5,000 rows (untimed; `remember()` one by one would only measure round trips). The search
uses the GIN index on `memory_facts.search` (migration 6).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

from common import postgres_uri, print_columns, vacuum

from timestep import open_store
from timestep.memory import Memory
from timestep.store import Store

SIZES = (1_000, 100_000)
_LOAD = """
    INSERT INTO memory_facts (scope, text, subject)
    SELECT $1, fact->>'text', fact->>'subject' FROM jsonb_array_elements($2::jsonb) AS fact
"""


def vocabulary(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return sorted({"".join(rng.choice(letters) for _ in range(rng.randint(4, 9))) for _ in range(3_200)})[:3_000]


async def load(store: Store, scope: str, count: int, words: list[str], rng: random.Random) -> None:
    for start in range(0, count, 5_000):
        batch = [
            {
                "text": " ".join(rng.choice(words) for _ in range(rng.randint(8, 16))),
                "subject": rng.choice(words) if rng.random() < 0.1 else None,
            }
            for _ in range(min(5_000, count - start))
        ]
        await store.execute(_LOAD, scope, json.dumps(batch))
    await store.execute("ANALYZE memory_facts")


async def recall_ms(memory: Memory, words: list[str], rng: random.Random, queries: int) -> tuple[float, float]:
    """(median ms, mean facts returned)."""
    times, found = [], []
    for number in range(queries + 20):
        query = " ".join(rng.choice(words) for _ in range(rng.choice((2, 3))))
        begin = time.perf_counter()
        facts = await memory.recall(query, limit=10)
        elapsed = time.perf_counter() - begin
        if number >= 20:  # warm-up
            times.append(elapsed)
            found.append(len(facts))
    return statistics.median(times) * 1000, statistics.mean(found)


async def main(queries: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="timestep-bench-memory-"))
    os.environ.setdefault("TIMESTEP_CACHE_DIR", str(work / "cache"))
    rng = random.Random(8)
    words = vocabulary(rng)
    uri = postgres_uri()
    results: dict[str, dict[int, tuple[float, float]]] = {}
    async with AsyncExitStack() as stack:
        backends = {"PGlite": await stack.enter_async_context(await open_store(pglite_path=work / "pglite"))}
        if uri:
            backends["PostgreSQL"] = await stack.enter_async_context(await open_store(uri))
        for name, store in backends.items():
            results[name] = {}
            for size in SIZES:
                scope = f"agent:bench-{uuid.uuid4().hex[:8]}"
                await load(store, scope, size, words, rng)
                results[name][size] = await recall_ms(Memory(store, scope=scope), words, rng, queries)
                await store.execute("DELETE FROM memory_facts WHERE scope = $1", scope)
            await vacuum(store, "memory_facts")

    print(f"timestep memory benchmark: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
          f"median ms of {queries} recalls (2-3 word queries, limit 10)")
    header = ["backend", *(f"{size:,} facts" for size in SIZES)]
    rows = [header]
    for name, by_size in results.items():
        cells = [f"{ms:.2f} ms ({hits:.1f} found)" for ms, hits in (by_size[size] for size in SIZES)]
        rows.append([name, *cells])
    print_columns(rows)
    if not uri:
        print("(no PostgreSQL: set PG_CONNECTION_URI for the PostgreSQL row)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.queries))
