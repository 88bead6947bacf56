"""Durable commits on PGlite: an acknowledged write's WAL is on stable storage first.

The sidecar runs under strace (TIMESTEP_NODE is a wrapper that execs it traced), which logs
every fsync/fdatasync it makes and every reply it writes, in order: a traced syscall's line is
written before the process goes on, so a reply's write follows the sync that allowed it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import child_env
from timestep.store.node import find_node

if shutil.which("strace") is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI must run the durability tests: install strace (`make setup` does, as root)")
    pytestmark = pytest.mark.skip(reason="strace is not installed (`make setup` installs it where it can)")

CHILD = """
import asyncio, json, os, sys
from timestep import open_store

def trace_lines():
    with open(os.environ["TRACE_FILE"]) as trace:
        return sum(1 for _ in trace)

async def main(path, count, concurrent):
    marks = {}
    async with await open_store(pglite_path=path) as store:
        await store.execute("CREATE TABLE acked (n int)")
        marks["writes"] = trace_lines()
        if concurrent:
            await asyncio.gather(*(store.execute("INSERT INTO acked VALUES ($1)", n) for n in range(count)))
        else:
            for n in range(count):
                await store.execute("INSERT INTO acked VALUES ($1)", n)
        marks["reads"] = trace_lines()
        for _ in range(count):
            assert await store.fetchval("SELECT count(*) FROM acked") == count
        marks["end"] = trace_lines()
        marks["pid"] = store.sidecar.link.ready.pid
        marks["durable"] = store.sidecar.link.ready.durable
    print(json.dumps(marks))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "concurrent"))
"""


def traced_run(tmp_path: Path, count: int, *, concurrent: bool = False, **env: str) -> tuple[dict[str, int], list[str]]:
    """Run CHILD with its sidecar under strace; its phase marks, and the trace's lines."""
    trace = tmp_path / "trace.log"
    wrapper = tmp_path / "traced-node"
    wrapper.write_text(
        "#!/bin/sh\n"
        'exec strace -f -qq -y --seccomp-bpf -e trace=fsync,fdatasync,write,writev -o "$TRACE_FILE" "$REAL_NODE" "$@"\n'
    )
    wrapper.chmod(0o755)
    trace.touch()
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(tmp_path / "db"), str(count), "concurrent" if concurrent else "sequential"],
        capture_output=True, text=True, timeout=300,
        env=child_env(TIMESTEP_NODE=str(wrapper), REAL_NODE=find_node(), TRACE_FILE=str(trace), **env),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), trace.read_text().splitlines()


def wal_syncs(lines: list[str]) -> list[str]:
    return [line for line in lines if re.search(r"\b(fsync|fdatasync)\(\d+<[^>]*/pg_wal/", line)]


def all_syncs(lines: list[str]) -> list[str]:
    return [line for line in lines if re.search(r"\b(fsync|fdatasync)\(", line)]


def replies(lines: list[str]) -> list[str]:
    return [line for line in lines if re.search(r"\bwritev?\(1<pipe", line)]


def test_every_acknowledged_write_is_synced_first_and_reads_never_sync(tmp_path: Path) -> None:
    marks, lines = traced_run(tmp_path, 20)
    assert marks["durable"] is True
    writes = lines[marks["writes"] : marks["reads"]]
    reads = lines[marks["reads"] : marks["end"]]
    assert len(wal_syncs(writes)) >= 20, "\n".join(writes[-10:])
    assert all_syncs(reads) == []
    # Each of the 20 replies (sequential: one in flight at a time) follows a WAL sync that
    # came after the reply before it.
    sync_lines, reply_lines = set(wal_syncs(writes)), set(replies(writes))
    synced = False
    answered = 0
    for line in writes:
        if line in reply_lines:
            assert synced, f"a write was answered before its WAL was synced:\n{line}"
            synced = False
            answered += 1
        elif line in sync_lines:
            synced = True
    assert answered == 20


def test_relaxed_writes_are_answered_without_syncing(tmp_path: Path) -> None:
    marks, lines = traced_run(tmp_path, 20, TIMESTEP_DURABILITY="relaxed")
    assert all_syncs(lines[marks["writes"] : marks["end"]]) == []


def test_writes_that_arrive_during_a_sync_share_the_next_one(tmp_path: Path) -> None:
    """Group commit: 200 inserts in flight at once need far fewer than 200 syncs."""
    marks, lines = traced_run(tmp_path, 200, concurrent=True)
    syncs = wal_syncs(lines[marks["writes"] : marks["reads"]])
    assert 1 <= len(syncs) < 100, f"{len(syncs)} syncs for 200 concurrent writes"
