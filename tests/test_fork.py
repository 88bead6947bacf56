"""fork() never gives wrong answers: a child gets its own link to the database, or a typed error.

Run in a fresh Python (no pytest threads around a fork): a store opened in the parent is used
by forked children (os.fork, multiprocessing's fork start method, as gunicorn and Celery
prefork do) while the parent keeps using it; with spawn, children open their own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import child_env, require_postgres

SCRIPT = """
import asyncio, json, multiprocessing, os, sys
from timestep import open_store

TARGET = json.loads(sys.argv[1])  # {"uri": ...} or {"pglite_path": ...}
store = None

async def answers(tag, count=20):
    \"\"\"How many of `count` queries came back with another query's answer.\"\"\"
    wrong = 0
    for i in range(count):
        if await store.fetchval("SELECT $1::int * 1000 + $2::int", tag, i) != tag * 1000 + i:
            wrong += 1
    await store.execute("INSERT INTO forked VALUES ($1)", tag)
    return wrong

def in_child(tag):
    try:
        return asyncio.run(asyncio.wait_for(answers(tag), 60))
    except Exception:  # a timeout, or a reply that could not be read: as wrong as can be
        return 100

def in_spawned_child(tag):
    async def run():
        global store
        store = await open_store(**TARGET)
        try:
            return await answers(tag)
        finally:
            await store.aclose()
    return asyncio.run(run())

async def open_it():
    global store
    store = await open_store(**TARGET)
    await store.execute("DROP TABLE IF EXISTS forked")
    await store.execute("CREATE TABLE forked (tag int)")
    return await store.fetchval("SELECT 1")

def main():
    report = {}
    asyncio.run(open_it())
    # os.fork: four children and the parent at once.
    children = []
    for tag in range(1, 5):
        pid = os.fork()
        if pid == 0:
            os._exit(min(in_child(tag), 100))
        children.append(pid)
    report["parent_wrong"] = in_child(100)
    report["fork_wrong"] = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    with multiprocessing.get_context("fork").Pool(3) as pool:
        report["pool_fork_wrong"] = pool.map(in_child, range(11, 17))
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        report["pool_spawn_wrong"] = pool.map(in_spawned_child, range(21, 25))
    report["tags"] = asyncio.run(store.fetch("SELECT tag FROM forked ORDER BY tag"))
    print(json.dumps(report, default=str))

if __name__ == "__main__":
    main()
"""


def run_script(tmp_path: Path, target: dict[str, str]) -> dict[str, object]:
    script = tmp_path / "forking.py"
    script.write_text(textwrap.dedent(SCRIPT))
    done = subprocess.run([sys.executable, str(script), json.dumps(target)], capture_output=True, text=True, env=child_env(), timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("backend", ["pglite", "postgres"])
def test_forked_children_get_their_own_answers(tmp_path: Path, backend: str) -> None:
    target = {"uri": require_postgres()} if backend == "postgres" else {"pglite_path": str(tmp_path / "db")}
    report = run_script(tmp_path, target)
    assert report["parent_wrong"] == 0
    assert report["fork_wrong"] == [0, 0, 0, 0]
    assert report["pool_fork_wrong"] == [0] * 6
    assert report["pool_spawn_wrong"] == [0] * 4
    expected = sorted([1, 2, 3, 4, 100, *range(11, 17), *range(21, 25)])
    assert [row["tag"] for row in report["tags"]] == expected  # type: ignore[union-attr, index]


def test_an_in_memory_store_in_a_forked_child_is_a_typed_error(tmp_path: Path) -> None:
    code = """
        import asyncio, os
        from timestep import open_store
        from timestep.errors import StoreUnusableAfterFork
        store = asyncio.run(open_store("memory://"))
        assert asyncio.run(store.fetchval("SELECT 41 + 1")) == 42
        pid = os.fork()
        if pid == 0:
            try:
                asyncio.run(store.fetchval("SELECT 1"))
                os._exit(1)
            except StoreUnusableAfterFork as exc:
                os._exit(0 if "forked child" in str(exc) else 2)
        child = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        assert asyncio.run(store.fetchval("SELECT 2")) == 2  # the parent's is untouched
        asyncio.run(store.aclose())
        print(child)
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=child_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
