"""Cross-language durable runs: a run paused and saved by Python resumes in Node through
timestep's JS module (js/index.mjs) and the stock @openai/agents, and the other way round, on
PGlite (the Node process reaches it through the running sidecar) and on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, GuardrailFunctionOutput, InputGuardrail

import banker
from scenarios import SCENARIOS, apply_decisions, check_outcome, tool_outputs
from timestep import open_store
from timestep.errors import RunNotResumable
from timestep.run_state import SDK_VERSION, RunStateStore
from timestep.runner import consume_result, run_agent
from timestep.store import Store
from timestep.store.node import find_node
from timestep.testing import FakeModelServer, call, text

DURABLE = Path(__file__).parent / "js" / "durable.mjs"

pytestmark = pytest.mark.anyio

def node(env: dict[str, str], server: FakeModelServer, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [find_node(), str(DURABLE), *args],
        capture_output=True, text=True, timeout=120, env={**env, "FAKE_MODEL_URL": server.base_url}, cwd=DURABLE.parent,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


async def saved_rows(store: Store, run_id: str) -> list[dict[str, Any]]:
    return await store.fetch(
        "SELECT sdk, sdk_version, schema_version, active, state IS NOT NULL AS has_py, state_js IS NOT NULL AS has_js "
        "FROM run_states WHERE run_id = $1 ORDER BY id",
        run_id,
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_paused_in_python_resumed_in_node(database: tuple[Store, dict[str, str]], scenario: str) -> None:
    store, env = database
    graph, prompt, script, decisions = SCENARIOS[scenario]
    run_id = str(uuid.uuid4())
    with FakeModelServer([*script, text("done")]) as server:
        agent = banker.make_graph(graph, server.base_url)
        result = await consume_result(await run_agent(agent, prompt, None))
        assert sorted(item.raw_item.call_id for item in result.interruptions) == sorted(decisions)
        await RunStateStore(agent, run_id, store=store).save(result.to_state())
        assert await saved_rows(store, run_id) == [
            {"sdk": "python", "sdk_version": SDK_VERSION, "schema_version": "1.21", "active": True, "has_py": True, "has_js": True}
        ]
        outcome = node(env, server, "resume", graph, run_id, json.dumps(decisions))
    check_outcome(outcome, decisions, server, executed="wire_money 5")
    resumed = await store.fetchval("SELECT resumed_at IS NOT NULL FROM run_states WHERE run_id = $1 AND active", run_id)
    assert resumed is True


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_paused_in_node_resumed_in_python(database: tuple[Store, dict[str, str]], scenario: str) -> None:
    store, env = database
    graph, prompt, script, decisions = SCENARIOS[scenario]
    run_id = str(uuid.uuid4())
    with FakeModelServer([*script, text("done")]) as server:
        paused = node(env, server, "pause", graph, json.dumps(prompt), run_id)
        assert sorted(paused["pending"]) == sorted(decisions)
        rows = await saved_rows(store, run_id)
        assert [(r["sdk"], r["schema_version"], r["has_py"], r["has_js"]) for r in rows] == [("javascript", "1.22", False, True)]
        assert rows[0]["sdk_version"] == "@openai/agents 0.20.0"
        agent = banker.make_graph(graph, server.base_url)
        state = await RunStateStore(agent, run_id, store=store).load()
        apply_decisions(state, decisions)
        banker.executed.clear()
        result = await consume_result(await run_agent(agent, state, None))
    outcome = {"final": result.final_output, "executed": list(banker.executed), "pending": len(result.interruptions)}
    check_outcome(outcome, decisions, server, executed="wire_money 5.0")


async def test_decisions_recorded_without_the_graph_apply_in_node(database: tuple[Store, dict[str, str]]) -> None:
    """`timestep runs approve/reject` (RunStateStore.decide) before a Node resume."""
    store, env = database
    run_id = str(uuid.uuid4())
    _, prompt, script, _ = SCENARIOS["two parallel, one rejected"]
    with FakeModelServer([*script, text("done")]) as server:
        agent = banker.make_agent(server.base_url)
        result = await consume_result(await run_agent(agent, prompt, None))
        await RunStateStore(agent, run_id, store=store).save(result.to_state())
        await RunStateStore.decide(run_id, approve=True, call_id="call_1_0", store=store)
        await RunStateStore.decide(run_id, approve=False, call_id="call_1_1", message="closed accounts stay open", store=store)
        outcome = node(env, server, "resume", "banker", run_id, "{}", "stream")
    assert outcome == {"final": "done", "executed": ["wire_money 5"], "pending": 0}
    assert tool_outputs(server) == ["sent 5", "closed accounts stay open"]


async def test_a_run_crosses_the_language_line_twice(database: tuple[Store, dict[str, str]]) -> None:
    """Python pauses; Node approves and pauses again; Python approves and finishes."""
    store, env = database
    run_id = str(uuid.uuid4())
    script = [call("wire_money", {"amount": 5}), call("close_account", {"account": "x"}, call_id="call_9"), text("done")]
    with FakeModelServer(script) as server:
        agent = banker.make_agent(server.base_url)
        result = await consume_result(await run_agent(agent, "send 5, then close x", None))
        await RunStateStore(agent, run_id, store=store).save(result.to_state())
        outcome = node(env, server, "resume", "banker", run_id, json.dumps({"call_1_0": "approve"}))
        assert outcome == {"final": None, "executed": ["wire_money 5"], "pending": 1}
        runs = RunStateStore(agent, run_id, store=store)
        assert [pending.call_id for pending in await RunStateStore.pending_calls(run_id, store)] == ["call_9"]
        state = await runs.load()
        state.approve(state.get_interruptions()[0])
        banker.executed.clear()
        final = await consume_result(await run_agent(agent, state, None))
    assert final.final_output == "done" and banker.executed == ["close_account x"]
    assert [(r["sdk"], r["active"]) for r in await saved_rows(store, run_id)] == [("python", False), ("javascript", True)]


@pytest.mark.parametrize("stream", ["", "stream"])
async def test_python_pauses_node_claims_and_finishes_python_is_refused(database: tuple[Store, dict[str, str]], stream: str) -> None:
    """A durable run claimed by either language is claimed for both: it runs once."""
    store, env = database
    run_id = str(uuid.uuid4())
    with FakeModelServer([call("wire_money", {"amount": 5}), text("Sent 5.")]) as server:
        agent = banker.make_agent(server.base_url)
        runs = RunStateStore(agent, run_id, store=store)
        await run_agent(agent, "send 5", None, run_store=runs)
        loaded_before = await runs.load()  # Python loads the run before Node takes it
        loaded_before.approve(loaded_before.get_interruptions()[0])
        banker.executed.clear()
        outcome = node(env, server, "claim", "banker", run_id, json.dumps({"call_1_0": "approve"}), stream)
        assert outcome == {"final": "Sent 5.", "executed": ["wire_money 5"], "pending": 0}
        with pytest.raises(RunNotResumable) as stale:
            await run_agent(agent, loaded_before, None, run_store=runs)
        assert stale.value.reason == "finished"
        with pytest.raises(RunNotResumable) as finished:
            await runs.load()
        assert finished.value.reason == "finished"
        # And Node is refused the same way.
        assert node(env, server, "claim", "banker", run_id, "{}") == {"refused": "finished", "executed": []}
        assert len(server.requests) == 2
    assert banker.executed == []
    [run] = [r for r in await RunStateStore.list_runs(store) if r.run_id == run_id]
    assert (run.status, run.final_output, run.lease_expires_at) == ("finished", "Sent 5.", None)


async def test_a_state_that_cannot_convert_is_saved_and_node_is_told_why(database: tuple[Store, dict[str, str]]) -> None:
    """An input guardrail result has no JS counterpart: Python still saves (and resumes) the
    run; Node's load names the field."""
    store, env = database
    run_id = str(uuid.uuid4())

    def allow(context: Any, agent: Agent[Any], text_input: Any) -> GuardrailFunctionOutput:
        return GuardrailFunctionOutput(output_info=None, tripwire_triggered=False)

    with FakeModelServer([call("wire_money", {"amount": 5}), text("done")]) as server:
        agent = banker.make_agent(server.base_url)
        agent = agent.clone(input_guardrails=[InputGuardrail(guardrail_function=allow, name="allow")])
        result = await consume_result(await run_agent(agent, "send 5", None))
        await RunStateStore(agent, run_id, store=store).save(result.to_state())
        error = await store.fetchval("SELECT conversion_error FROM run_states WHERE run_id = $1", run_id)
        assert error.startswith("input_guardrail_results: has entries")
        done = subprocess.run(
            [find_node(), str(DURABLE), "resume", "banker", run_id, "{}"],
            capture_output=True, text=True, timeout=120, env={**env, "FAKE_MODEL_URL": server.base_url},
        )
        assert done.returncode != 0
        assert "InvalidRunState" in done.stderr and "input_guardrail_results: has entries" in done.stderr
        state = await RunStateStore(agent, run_id, store=store).load()  # Python resumes it as ever
        state.approve(state.get_interruptions()[0])
        assert (await consume_result(await run_agent(agent, state, None))).final_output == "done"


async def test_node_uses_the_default_schema_after_a_namespaced_request(tmp_path: Path) -> None:
    """One sidecar serves a namespaced Python store and Node: each request sets its own path."""
    async with await open_store(pglite_path=tmp_path / "db") as default:
        namespaced = await open_store(pglite_path=tmp_path / "db", namespace="elsewhere")
        try:
            await namespaced.fetchval("SELECT count(*) FROM run_states")  # the session is now in 'elsewhere'
            env = {key: value for key, value in os.environ.items() if key != "PG_CONNECTION_URI"}
            env["TIMESTEP_PGLITE_DIR"] = str(tmp_path / "db")
            run_id = str(uuid.uuid4())
            with FakeModelServer([call("wire_money", {"amount": 5})]) as server:
                node(env, server, "pause", "banker", json.dumps("send 5"), run_id)
            assert await default.fetchval("SELECT count(*) FROM run_states WHERE run_id = $1", run_id) == 1
            assert await namespaced.fetchval("SELECT count(*) FROM run_states WHERE run_id = $1", run_id) == 0
        finally:
            await namespaced.aclose()
