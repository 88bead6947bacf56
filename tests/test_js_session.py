"""One conversation, both SDKs: a timestep Session written by Python is continued by JavaScript
(js/session.mjs, with the stock @openai/agents) and the other way round, on both backends. Each
SDK sends the model the whole history, and reads the stored items in its own format."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, function_tool

import crashy
from timestep import open_store
from timestep.runner import run_agent
from timestep.session import Session
from timestep.store import Store
from timestep.store.node import find_node
from timestep.store.schema import LATEST
from timestep.testing import FakeModelServer, RecordedRequest, Reply, call, text

pytestmark = pytest.mark.anyio

CONVERSATION = Path(__file__).parent / "js" / "conversation.mjs"


@function_tool
def lookup(word: str) -> str:
    """Look a word up."""
    return f"{word}: found"


def librarian(request: RecordedRequest) -> Reply:
    """Turn N (the N-th user message): look up wN, then answer "answer N"."""
    items = request.body["input"]
    turn = sum(item.get("role") == "user" for item in items)
    if items[-1].get("type") == "function_call_output":
        return text(f"answer {turn}")
    return call("lookup", {"word": f"w{turn}"}, call_id=f"t{turn}")


def gist(item: dict[str, Any]) -> tuple[Any, ...]:
    """What an item says, in either SDK's format (or the model's)."""
    kind = item.get("type", "message")
    if kind == "message":
        content = item["content"]
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content)
        return (item["role"], content)
    if kind == "function_call":
        return ("call", item.get("call_id", item.get("callId")), item["name"], json.loads(item["arguments"]))
    if kind in ("function_call_output", "function_call_result"):
        output = item["output"]
        return ("output", item.get("call_id", item.get("callId")), output["text"] if isinstance(output, dict) else output)
    raise AssertionError(f"unexpected item {item}")


def turn_items(turn: int) -> list[tuple[Any, ...]]:
    return [("user", f"question {turn}"), ("call", f"t{turn}", "lookup", {"word": f"w{turn}"}),
            ("output", f"t{turn}", f"w{turn}: found"), ("assistant", f"answer {turn}")]


async def test_a_conversation_alternating_python_and_javascript(database: tuple[Store, dict[str, str]]) -> None:
    store, env = database
    session_id = f"both-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([librarian] * 16) as server:
        agent = Agent(name="librarian", instructions="look words up", model=server.responses_model(), tools=[lookup])
        for turn in range(1, 5):
            if turn % 2:
                result = await run_agent(agent, f"question {turn}", Session(session_id, store=store))
                assert result.final_output == f"answer {turn}"
            else:
                done = subprocess.run(
                    [find_node(), str(CONVERSATION), session_id, f"question {turn}"], capture_output=True, text=True,
                    timeout=120, env={**env, "FAKE_MODEL_URL": server.base_url}, cwd=CONVERSATION.parent,
                )
                assert done.returncode == 0, done.stderr[-4000:]
                in_javascript = json.loads(done.stdout)
                assert in_javascript["final"] == f"answer {turn}"
        requests = server.requests
    history = [item for turn in range(1, 5) for item in turn_items(turn)]
    # Each turn's two requests: the whole history so far, then its tool call and output.
    assert [[gist(item) for item in request.body["input"]] for request in requests] == [
        history[: 4 * (turn - 1) + 1 + extra] for turn in range(1, 5) for extra in (0, 2)
    ]
    assert [request.headers.get("x-stainless-lang") for request in requests] == ["python"] * 2 + ["js"] * 2 + ["python"] * 2 + ["js"] * 2
    # Each SDK reads the stored items in its own format.
    in_python = await Session(session_id, store=store).get_items()
    assert [gist(item) for item in in_python] == history
    assert all("callId" not in item for item in in_python) and sum("call_id" in item for item in in_python) == 8
    assert [gist(item) for item in in_javascript["items"]] == history
    assert all("call_id" not in item for item in in_javascript["items"])
    assert [item["type"] for item in in_javascript["items"] if "callId" in item] == ["function_call", "function_call_result"] * 4


async def test_the_typescript_example_pauses_saves_loads_approves_and_resumes(database: tuple[Store, dict[str, str]]) -> None:
    store, env = database
    run_id = f"ts-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([call("wire_money", {"amount": 5}, call_id="w1"), text("sent it")]) as server:
        done = subprocess.run(
            [find_node(), str(CONVERSATION.parent / "seed_example.mjs"), run_id], capture_output=True, text=True,
            timeout=120, env={**env, "FAKE_MODEL_URL": server.base_url}, cwd=CONVERSATION.parent,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        resumed = server.requests[-1].body["input"]
    outcome = json.loads(done.stdout)
    assert (outcome["paused"], outcome["final"], outcome["executed"]) == (["w1"], "sent it", [5])
    conversation = [("user", "send 5"), ("call", "w1", "wire_money", {"amount": 5}), ("output", "w1", "sent 5"), ("assistant", "sent it")]
    assert [gist(item) for item in resumed] == conversation[:3]
    assert [gist(item) for item in outcome["items"]] == conversation
    assert [gist(item) for item in await Session(run_id, store=store).get_items()] == conversation


async def test_the_session_interface_in_javascript(database: tuple[Store, dict[str, str]]) -> None:
    store, env = database
    session_id = f"api-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [find_node(), str(CONVERSATION.parent / "session_api.mjs"), session_id], capture_output=True, text=True,
        timeout=120, env=env, cwd=CONVERSATION.parent,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout)
    assert out["id"] == session_id
    assert [gist(item) for item in out["latest"]] == [("assistant", "b"), ("user", "c")]
    assert out["none"] == []
    assert gist(out["popped"]) == ("user", "c")
    assert [gist(item) for item in out["left"]] == [("user", "a"), ("assistant", "b")]
    assert (out["cleared"], out["emptyPop"]) == ([], None)
    assert out["badTtl"] == "TypeError: ttl must be a positive number of seconds or null, not -1"
    # Written after the clear: a new session, with the ttl the object gives it.
    assert [gist(item) for item in await Session(session_id, store=store).get_items()] == [("user", "again")]
    ttl = await store.fetchval("SELECT extract(epoch FROM ttl) FROM session_ttl WHERE session_id = $1", session_id)
    assert float(ttl) == 3600


def test_a_node_only_project_on_postgresql_needs_no_python(pg_schema_uri: str, tmp_path: Path) -> None:
    """A database no timestep process has opened (a new, empty schema): the JS module applies
    the migrations itself, then saves, loads, resumes and keeps a conversation; a durable run
    starts, journals and finishes. Python then finds the schema complete and the items readable."""
    env = {key: value for key, value in os.environ.items() if key != "TIMESTEP_PGLITE_DIR"}
    env.update(PG_CONNECTION_URI=pg_schema_uri, CRASHY_LEDGER=str(tmp_path / "ledger"))
    run_id = f"node-only-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([call("wire_money", {"amount": 5}, call_id="w1"), text("sent it")] + [crashy.answer] * 4) as server:
        env["FAKE_MODEL_URL"] = server.base_url
        example = subprocess.run([find_node(), str(CONVERSATION.parent / "seed_example.mjs"), run_id], capture_output=True,
                                 text=True, timeout=120, env=env, cwd=CONVERSATION.parent)
        assert example.returncode == 0, example.stderr[-4000:]
        durable = subprocess.run([find_node(), str(CONVERSATION.parent / "crashy.mjs"), "start", f"{run_id}-durable"],
                                 capture_output=True, text=True, timeout=120, env=env, cwd=CONVERSATION.parent)
        assert durable.returncode == 0, durable.stderr[-4000:]
    assert json.loads(example.stdout)["final"] == "sent it" and json.loads(durable.stdout) == {"final": "done"}
    asyncio.run(check_from_python(pg_schema_uri, run_id))


async def check_from_python(uri: str, run_id: str) -> None:
    async with await open_store(uri) as store:
        assert await store.fetchval("SELECT max(version) FROM timestep_schema") == LATEST
        assert len(await Session(run_id, store=store).get_items()) == 4
        steps = await store.fetch("SELECT kind FROM run_steps WHERE run_id = $1 ORDER BY seq", f"{run_id}-durable")
        assert [step["kind"] for step in steps].count("model") == 4
        row = await store.fetchrow("SELECT status FROM run_states WHERE run_id = $1 AND active", f"{run_id}-durable")
        assert row is not None and row["status"] == "finished"
