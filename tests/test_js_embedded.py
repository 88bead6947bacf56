"""The embedded database from Node alone: with no Python process on a PGlite directory, the JS
module starts the sidecar itself (under the directory's lock, as Python does) and migrates the
database; Python processes then share that sidecar, and the directory opens from either side
once it is gone."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

import crashy
from timestep import open_store
from timestep.session import Session
from timestep.store.node import find_node
from timestep.store.schema import LATEST
from timestep.testing import FakeModelServer, call, text

pytestmark = pytest.mark.anyio

JS = Path(__file__).parent / "js"


def node_env(pglite_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PG_CONNECTION_URI", "TIMESTEP_PGLITE_DIR")}
    return {**env, "TIMESTEP_PGLITE_DIR": str(pglite_dir), **extra}


async def test_a_node_only_project_on_a_new_embedded_directory(tmp_path: Path) -> None:
    pglite_dir = tmp_path / "new-db"
    run_id = f"node-only-{uuid.uuid4().hex[:8]}"
    replies = [call("wire_money", {"amount": 5}, call_id="w1"), text("sent it"), *[crashy.answer] * 4]
    with FakeModelServer(replies) as server:
        env = node_env(pglite_dir, FAKE_MODEL_URL=server.base_url, CRASHY_LEDGER=str(tmp_path / "ledger"))
        example = subprocess.run([find_node(), str(JS / "seed_example.mjs"), run_id], capture_output=True, text=True,
                                 timeout=300, env=env, cwd=JS)
        assert example.returncode == 0, example.stderr[-4000:]
        durable = subprocess.run([find_node(), str(JS / "crashy.mjs"), "start", f"{run_id}-durable"], capture_output=True,
                                 text=True, timeout=300, env=env, cwd=JS)
        assert durable.returncode == 0, durable.stderr[-4000:]
    assert json.loads(example.stdout)["final"] == "sent it" and json.loads(durable.stdout) == {"final": "done"}
    # Node has exited, and its sidecar with it: Python opens the directory as its own.
    assert "socket " in (pglite_dir / "lock").read_text()
    async with await open_store(pglite_path=pglite_dir) as store:
        assert await store.fetchval("SELECT max(version) FROM timestep_schema") == LATEST
        assert len(await Session(run_id, store=store).get_items()) == 4
        status = await store.fetchval("SELECT status FROM run_states WHERE run_id = $1 AND active", f"{run_id}-durable")
        assert status == "finished"


async def test_python_shares_the_sidecar_node_started(tmp_path: Path) -> None:
    pglite_dir = tmp_path / "shared"
    holder = subprocess.Popen([find_node(), str(JS / "embedded_holder.mjs"), str(pglite_dir), "shared"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=node_env(pglite_dir), cwd=JS)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        line = holder.stdout.readline()
        assert line.startswith(f"ready node pid {holder.pid}, sidecar pid "), line + (holder.stderr.read() if holder.poll() else "")
        sidecar_pid = int(line.rsplit(" ", 1)[1])
        async with await open_store(pglite_path=pglite_dir) as store:
            session = Session("shared", store=store)
            assert await session.get_items() == [{"role": "user", "content": "from node"}]
            holder.stdin.write("done\n")
            holder.stdin.flush()
            assert holder.wait(timeout=60) == 0
            # Its starter gone, the sidecar goes on serving the processes still connected.
            await session.add_items([{"role": "user", "content": "from python"}])
            assert [item["content"] for item in await session.get_items()] == ["from node", "from python"]
            os.kill(sidecar_pid, 0)  # the sidecar Node started, still serving
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


async def test_two_node_processes_opening_a_new_directory_at_once(tmp_path: Path) -> None:
    """One starts the sidecar (initdb in a staging directory, then renamed into place); the
    other waits for it to publish its socket, and joins it: neither sees a half-made database."""
    pglite_dir = tmp_path / "raced"
    processes = [
        subprocess.Popen([find_node(), str(JS / "first_use.mjs"), str(pglite_dir), f"hello {n}"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=node_env(pglite_dir), cwd=JS)
        for n in range(2)
    ]
    outcomes = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        outcomes.append(json.loads(out)["items"])
    assert sorted(outcomes) in ([1, 2], [2, 2])  # the second write saw the first, or both read after both
    assert not list(pglite_dir.glob("pgdata.*.tmp"))
    async with await open_store(pglite_path=pglite_dir) as store:
        assert sorted(item["content"] for item in await Session("first-use", store=store).get_items()) == ["hello 0", "hello 1"]
