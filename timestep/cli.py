"""The `timestep` command. `doctor` opens the store and reports what it runs on."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence

from . import __version__
from .errors import TimestepError
from .store import Store, open_store
from .store.pglite import PGliteStore


async def _doctor(uri: str | None, pglite_path: str | None) -> int:
    started = time.perf_counter()
    async with await open_store(uri, pglite_path=pglite_path) as store:
        opened = time.perf_counter() - started
        _line("timestep", __version__)
        _line("backend", store.backend)
        _line("location", store.location)
        if isinstance(store, PGliteStore) and store.sidecar.link is not None:
            ready = store.sidecar.link.ready
            _line("sidecar", f"pid {ready.pid}, Node {ready.node}, PGlite {ready.pglite}")
        _line("server", await store.fetchval("SELECT version()"))
        _line("schema", f"version {await store.fetchval('SELECT max(version) FROM timestep_schema')}")
        _line("opened in", f"{opened * 1000:.0f} ms")
        _line("round trip", f"{await _round_trip_ms(store):.3f} ms (median of 200 x SELECT 1)")
    return 0


async def _round_trip_ms(store: Store) -> float:
    times = []
    for _ in range(200):
        begin = time.perf_counter()
        await store.fetchval("SELECT 1")
        times.append(time.perf_counter() - begin)
    return statistics.median(times) * 1000


def _line(label: str, value: object) -> None:
    print(f"{label:<12} {value}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `timestep` console script."""
    parser = argparse.ArgumentParser(prog="timestep", description="Durable OpenAI Agents runs.")
    parser.add_argument("--version", action="version", version=f"timestep {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    doctor = commands.add_parser("doctor", help="open the store and report what it runs on")
    doctor.add_argument("--uri", help="postgresql://... or memory:// (default: PG_CONNECTION_URI, else PGlite)")
    doctor.add_argument("--pglite-path", help="PGlite directory (default: TIMESTEP_PGLITE_DIR, else the user data dir)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_doctor(args.uri, args.pglite_path))
    except TimestepError as exc:
        print(f"timestep: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
