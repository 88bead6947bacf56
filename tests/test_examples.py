"""Every script in examples/ runs as its docstring says, each command in a process of its own, on
a new embedded database, with the models' base URLs pointed at FakeModelServers through the
environment."""

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
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.slow


def banker(request: RecordedRequest) -> Reply:
    """The banker's model: it calls wire_money until it has been told the call's output, then
    says what came of it."""
    body = json.dumps(request.body)
    if "function_call_output" not in body:
        return call("wire_money", {"amount": 5})
    return text("Rejected." if "not approved" in body else "Sent.")


def chat(request: RecordedRequest) -> Reply:
    """The assistant's model: it answers with how many user messages it was sent."""
    return text(f"{request.text().count('my name is Alice') + request.text().count('what is my name')} user turns")


def example(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )


def environment(tmp_path: Path, server: FakeModelServer, **extra: str) -> dict[str, str]:
    env = child_env(
        OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="fake-key", TIMESTEP_PGLITE_DIR=str(tmp_path / "db"), **extra,
    )
    env.pop("PG_CONNECTION_URI", None)  # the examples' default: the embedded database
    env.pop("TIMESTEP_NAMESPACE", None)
    return env


def test_durable_approval_finishes_a_run_once(tmp_path: Path) -> None:
    with FakeModelServer([banker] * 20) as server:
        env = environment(tmp_path, server)
        started = example("durable_approval.py", "send 5 to Bob", env=env)
        assert started.returncode == 0, started.stderr
        assert 'waiting for approval: wire_money({"amount": 5})' in started.stdout
        run_id = re.search(r"run id: (\S+)", started.stdout).group(1)

        approved = example("durable_approval.py", "--approve", run_id, env=env)
        assert approved.returncode == 0, approved.stderr
        assert approved.stdout.strip() == "Sent."
        requests = len(server.requests)

        again = example("durable_approval.py", "--approve", run_id, env=env)
        assert again.returncode == 1
        assert again.stderr.startswith("cannot resume:") and "finished" in again.stderr
        assert len(server.requests) == requests  # refused before any model call

        rejected_run = example("durable_approval.py", "send 7", env=env)
        rejected_id = re.search(r"run id: (\S+)", rejected_run.stdout).group(1)
        rejected = example("durable_approval.py", "--reject", rejected_id, env=env)
        assert rejected.stdout.strip() == "Rejected."


def test_a_worker_finishes_the_approved_runs(tmp_path: Path) -> None:
    with FakeModelServer([banker] * 20) as server:
        done = example("worker.py", env=environment(tmp_path, server))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all(line.endswith(": finished, 'Sent.'") for line in lines)
    assert len(server.requests) == 6  # each run: the call, then the answer after approval


def test_a_chat_session_outlives_its_process(tmp_path: Path) -> None:
    with FakeModelServer([chat] * 4) as server:
        env = environment(tmp_path, server)
        first = example("chat_session.py", "alice", "my name is Alice", env=env)
        second = example("chat_session.py", "alice", "what is my name?", env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.splitlines() == ["1 user turns", "(2 items in session 'alice')"]
    assert second.stdout.splitlines() == ["2 user turns", "(4 items in session 'alice')"]  # it saw the first turn


def test_model_routing_reaches_each_server_by_prefix(tmp_path: Path) -> None:
    with FakeModelServer([text("from ollama")]) as ollama, FakeModelServer([text("from vllm")]) as vllm:
        env = environment(tmp_path, ollama, OLLAMA_BASE_URL=ollama.base_url, TIMESTEP_PROVIDER_VLLM_BASE_URL=vllm.base_url)
        local = example("model_routing.py", "ollama/gpt-oss:20b", "hi", env=env)
        custom = example("model_routing.py", "vllm/Qwen/Qwen3-8B", "hi", env=env)
        unknown = example("model_routing.py", "nowhere/model", "hi", env=env)
        assert local.stdout.strip() == "ollama/gpt-oss:20b: from ollama", local.stderr
        assert custom.stdout.strip() == "vllm/Qwen/Qwen3-8B: from vllm", custom.stderr
        assert [request.model for request in ollama.requests] == ["gpt-oss:20b"]
        assert [request.model for request in vllm.requests] == ["Qwen/Qwen3-8B"]
    assert unknown.returncode == 1 and "nowhere" in unknown.stderr and "vllm" in unknown.stderr


def test_a_run_paused_in_python_is_finished_in_node(tmp_path: Path) -> None:
    with FakeModelServer([banker] * 4) as server:
        done = example("handoff.py", env=environment(tmp_path, server))
        languages = [request.headers.get("x-stainless-lang") for request in server.requests]
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("python: run handoff-") and lines[0].endswith("waits for ['wire_money']")
    assert lines[1:4] == ['node: approving wire_money({"amount": 5})', "node: Sent.", "python: the run is finished: 'Sent.'"]
    assert "finished" in lines[4]
    assert languages == ["python", "js"]  # Python paused the run, Node finished it


def test_every_example_is_tested() -> None:
    scripts = {path.name for path in EXAMPLES.iterdir() if path.suffix in (".py", ".mjs")}
    source = Path(__file__).read_text()
    untested = {name for name in scripts - {"bank.py", "resume.mjs"} if f'"{name}"' not in source}
    assert not untested
    assert all(name in (EXAMPLES / "README.md").read_text() for name in scripts)
