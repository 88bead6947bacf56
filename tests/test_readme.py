"""Every Python block of README.md runs as written, in order, as a reader runs them in a
notebook: in one namespace, with top-level await, on the embedded default store, with the
models' base URLs pointed at a FakeModelServer through the environment."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import child_env
from timestep.testing import FakeModelServer, RecordedRequest, Reply, call, text

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

# Runs in a child process (the default store is one per process): each block compiled with
# top-level await, run in one namespace, reported as it finishes.
RUN_BLOCKS = """
import ast, asyncio, json, sys

async def main(blocks):
    namespace = {"__name__": "__readme__"}
    for number, block in enumerate(blocks, 1):
        code = compile(block, f"README.md python block {number}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)
        if asyncio.iscoroutine(result):
            await result
        print(f"block {number} ran", flush=True)

asyncio.run(main(json.loads(sys.stdin.read())))
"""


def model(request: RecordedRequest) -> Reply:
    """The README's examples' model: it calls wire_money when it is offered and has not yet
    been told its output, and otherwise answers."""
    body = json.dumps(request.body)
    answered = "function_call_output" in body or '"role": "tool"' in body
    if '"wire_money"' in body and not answered:
        return call("wire_money", {"amount": 5})
    return text("Done.")


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text())


@pytest.mark.slow
def test_the_readmes_python_blocks_run_as_written(tmp_path: Path) -> None:
    blocks = python_blocks(ROOT / "README.md")
    assert len(blocks) >= 10
    with FakeModelServer([model] * 200) as server:
        env = child_env(
            OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="fake-key", OLLAMA_BASE_URL=server.base_url,
            TIMESTEP_PGLITE_DIR=str(tmp_path / "pglite"),
        )
        env.pop("PG_CONNECTION_URI", None)  # the README's default: the embedded database
        done = subprocess.run(
            [sys.executable, "-c", RUN_BLOCKS], input=json.dumps(blocks), capture_output=True, text=True,
            env=env, cwd=tmp_path, timeout=600,
        )
        requests = server.requests
    ran = done.stdout.splitlines()
    assert done.returncode == 0, f"{ran[-1] if ran else 'no block'} ran, then:\n{done.stderr[-4000:]}"
    assert ran == [f"block {n} ran" for n in range(1, len(blocks) + 1)]
    assert any(request.model == "gpt-oss:20b" for request in requests)  # the Ollama block reached the fake server
