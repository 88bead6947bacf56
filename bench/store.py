"""Store benchmark: the PGlite sidecar against its in-process floor, and PostgreSQL beside it.

    python bench/store.py [--rounds N] [--warmup N]

Prints, side by side in one run:
- round trip of `SELECT 1` through the sidecar vs the same query in-process in Node (floor:
  PGlite's `query()`, as DESIGN.md measured it; and the raw `execProtocol` message the sidecar
  itself sends, the lower bound of its path);
- a single-row insert, the same way;
- 10,000-row insert as one batch, and as 10,000 pipelined single inserts;
- time to first query on a new data directory and on an existing one, and on a new one with
  an empty cache: copied from the template the wheel ships, and without it (initdb and the
  migrations, as before a template was shipped);
- the sidecar's peak and steady RSS;
- the same operations on PostgreSQL (PG_CONNECTION_URI, else the local server if it answers).
The sidecar's writes are durable (answered once their WAL is fsynced); the in-process floor's
are not (PGlite as it ships, fsync off).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import first_query_s, postgres_uri, print_columns

from timestep import open_store
from timestep.store import Store
from timestep.store.node import find_node
from timestep.store.pglite import PGliteStore
from timestep.store import datadir
from timestep.store.template import ensure_migrated_template

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = 3  # the sidecar's and the floor's per-operation figures alternate in this many blocks


async def per_op_ms(store: Store, sql: str, make_params: Any, warmup: int, rounds: int) -> float:
    """Median milliseconds of one awaited statement, after warm-up (PGlite's JIT needs ~2,000)."""
    for i in range(warmup):
        await store.execute(sql, *make_params(i))
    times = []
    for i in range(rounds):
        begin = time.perf_counter()
        await store.execute(sql, *make_params(i))
        times.append(time.perf_counter() - begin)
    return statistics.median(times) * 1000


async def bulk_inserts(store: Store) -> tuple[float, float]:
    """Seconds for 10,000 rows as one batch, and as 10,000 pipelined single inserts."""
    await store.execute("DROP TABLE IF EXISTS bench_rows")
    await store.execute("CREATE TABLE bench_rows (id bigint, body text)")
    sql = "INSERT INTO bench_rows VALUES ($1, $2)"
    begin = time.perf_counter()
    await store.execute_batch([(sql, (i, "row")) for i in range(10_000)])
    batch = time.perf_counter() - begin
    begin = time.perf_counter()
    await asyncio.gather(*(store.execute(sql, i, "row") for i in range(10_000)))
    pipelined = time.perf_counter() - begin
    assert await store.fetchval("SELECT count(*) FROM bench_rows") == 20_000
    await store.execute("DROP TABLE bench_rows")
    return batch, pipelined


def rss_mb(pid: int) -> tuple[float, float]:
    """(peak, current) resident set size of a process, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    kb = lambda name: int(fields[name].split()[0]) / 1024  # noqa: E731
    return kb("VmHWM"), kb("VmRSS")


async def first_query_empty_cache_s(work: Path, shipped: bool) -> float:
    """Seconds to a first query on a new directory with an empty cache: copied from the
    shipped template (as a wheel, or `make setup`, has it), or without one (initdb, migrations)."""
    saved = os.environ["TIMESTEP_CACHE_DIR"], datadir.SHIPPED_DIR
    os.environ["TIMESTEP_CACHE_DIR"] = tempfile.mkdtemp(dir=work)
    if not shipped:
        datadir.SHIPPED_DIR = work / "nothing-shipped"
    try:
        return await first_query_s(Path(tempfile.mkdtemp(dir=work)) / "db")
    finally:
        os.environ["TIMESTEP_CACHE_DIR"], datadir.SHIPPED_DIR = saved


def node_floor(data_dir: Path, warmup: int, rounds: int) -> dict[str, Any]:
    done = subprocess.run(
        [find_node(), str(ROOT / "bench" / "floor.mjs"), str(data_dir), str(warmup), str(rounds)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(done.stdout)


async def main(warmup: int, rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="timestep-bench-"))
    os.environ.setdefault("TIMESTEP_CACHE_DIR", str(work / "cache"))
    try:
        await ensure_migrated_template()  # made once per machine; not part of any figure below

        empty_cache = [await first_query_empty_cache_s(work, shipped=True) for _ in range(3)]
        not_shipped = [await first_query_empty_cache_s(work, shipped=False) for _ in range(3)]
        new_dir = [await first_query_s(work / f"new-{i}") for i in range(5)]
        existing = [await first_query_s(work / "new-0") for _ in range(5)]

        store = await open_store(pglite_path=work / "main")
        assert isinstance(store, PGliteStore) and store.sidecar.link is not None
        await store.execute("CREATE TABLE bench_single (id bigint, body text)")
        # The per-operation figures and their floor in alternating blocks, so that both see
        # the same stretches of a noisy machine (the floor needs a Node process of its own).
        selects, inserts, floors = [], [], []
        for block in range(BLOCKS):
            selects.append(await per_op_ms(store, "SELECT 1", lambda i: (), warmup, rounds // BLOCKS))
            inserts.append(await per_op_ms(store, "INSERT INTO bench_single VALUES ($1, $2)", lambda i: (i, "row"), warmup, rounds // BLOCKS))
            await store.aclose()  # the floor opens the same directory; each block warms up anew
            floors.append(node_floor(work / "main" / "pgdata", warmup, rounds // BLOCKS))
            store = await open_store(pglite_path=work / "main")
            assert isinstance(store, PGliteStore) and store.sidecar.link is not None
        select_ms, insert_ms = statistics.median(selects), statistics.median(inserts)
        floor = {
            key: {"median": statistics.median(f[key]["median"] for f in floors)} for key in ("select1", "select1Raw", "insert")
        } | {"batch10k": statistics.median(f["batch10k"] for f in floors)}
        batch_s, pipelined_s = await bulk_inserts(store)
        pid = store.sidecar.link.ready.pid
        peak_mb, steady_mb = rss_mb(pid)
        await store.aclose()

        pg: dict[str, float] = {}
        uri = postgres_uri()
        if uri:
            async with await open_store(uri) as server:
                await server.execute("DROP TABLE IF EXISTS bench_single")
                await server.execute("CREATE TABLE bench_single (id bigint, body text)")
                pg["select"] = await per_op_ms(server, "SELECT 1", lambda i: (), warmup, rounds)
                pg["insert"] = await per_op_ms(server, "INSERT INTO bench_single VALUES ($1, $2)", lambda i: (i, "row"), warmup, rounds)
                pg["batch"], pg["pipelined"] = await bulk_inserts(server)
                await server.execute("DROP TABLE bench_single")
                begin = time.perf_counter()
                async with await open_store(uri) as again:
                    await again.fetchval("SELECT 1")
                pg["first"] = time.perf_counter() - begin
    finally:
        shutil.rmtree(work, ignore_errors=True)

    na = "n/a"
    fmt_pg = lambda key, scale=1.0, unit="ms": f"{pg[key] * scale:.3f} {unit}" if key in pg else na  # noqa: E731
    rows = [
        ("SELECT 1 round trip", f"{select_ms:.3f} ms", f"{floor['select1']['median']:.3f} ms", f"{select_ms / floor['select1']['median']:.2f}x", fmt_pg("select")),
        ("  floor via execProtocol", "", f"{floor['select1Raw']['median']:.3f} ms", f"{select_ms / floor['select1Raw']['median']:.2f}x", ""),
        ("single-row INSERT", f"{insert_ms:.3f} ms", f"{floor['insert']['median']:.3f} ms", f"{insert_ms / floor['insert']['median']:.2f}x", fmt_pg("insert")),
        ("10,000 rows, one batch", f"{batch_s:.2f} s", f"{floor['batch10k'] / 1000:.2f} s", f"{batch_s / (floor['batch10k'] / 1000):.2f}x", fmt_pg("batch", 1, "s")),
        ("10,000 pipelined INSERTs", f"{pipelined_s:.2f} s", "", "", fmt_pg("pipelined", 1, "s")),
        ("first query, new dir", f"{statistics.median(new_dir):.2f} s", "", "", fmt_pg("first", 1, "s")),
        ("first query, existing dir", f"{statistics.median(existing):.2f} s", "", "", ""),
        ("first query, empty cache", f"{statistics.median(empty_cache):.2f} s", "", "", ""),
        ("  without a shipped template", f"{statistics.median(not_shipped):.2f} s", "", "", ""),
        ("sidecar RSS, peak", f"{peak_mb:.0f} MB", "", "", ""),
        ("sidecar RSS, steady", f"{steady_mb:.0f} MB", "", "", ""),
    ]
    header = ("operation", "PGlite sidecar", "Node in-process", "ratio", "PostgreSQL")
    print(f"timestep store benchmark: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"{warmup} warm-up + {rounds} measured per-op rounds (medians)")
    print_columns([header, *rows])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warmup", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args()
    asyncio.run(main(args.warmup, args.rounds))
