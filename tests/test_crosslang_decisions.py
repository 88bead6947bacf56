"""Decisions that live inside a saved state cross between the SDKs: an approval of one call,
and an approval or rejection of every later call of a tool (with its message), made in one SDK
and saved with the state, hold when the other SDK resumes it, as they do in the SDK that made
them. Differential: each crossing is checked against the same run done in one SDK."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

import banker
from test_crosslang_runs import node
from timestep.run_state import RunStateStore
from timestep.runner import run_agent
from timestep.store import Store
from timestep.testing import FakeModelServer, call, text

pytestmark = pytest.mark.anyio

# The model asks for wire_money(5) (the run pauses on it), then for wire_money(7), then answers.
SCRIPT = [call("wire_money", {"amount": 5}, call_id="w1"), call("wire_money", {"amount": 7}, call_id="w2"), text("done")]
DECISIONS = ["approve", "reject:not today", "always approve", "always reject:not this account"]


async def decided_in_python(store: Store, run_id: str, decision: str, server: FakeModelServer) -> None:
    agent = banker.make_agent(server.base_url)
    result = await run_agent(agent, "send 5, then 7")
    state = result.to_state()
    for item in state.get_interruptions():
        if decision == "approve":
            state.approve(item)
        elif decision == "always approve":
            state.approve(item, always_approve=True)
        elif decision.startswith("reject:"):
            state.reject(item, rejection_message=decision.removeprefix("reject:"))
        else:
            state.reject(item, always_reject=True, rejection_message=decision.removeprefix("always reject:"))
    await RunStateStore(agent, run_id, store=store).save(state)


async def resumed_in_python(store: Store, run_id: str, server: FakeModelServer) -> dict[str, Any]:
    agent = banker.make_agent(server.base_url)
    state = await RunStateStore(agent, run_id, store=store).load()
    banker.executed.clear()
    result = await run_agent(agent, state)
    pending = [item.raw_item.call_id for item in result.interruptions]
    return {"final": None if pending else result.final_output, "executed": list(banker.executed), "pending": pending}


def outcome(found: dict[str, Any], server: FakeModelServer) -> dict[str, Any]:
    """What a resumed run did: its end, the amounts wired, what the model was told of each call."""
    told = {item["call_id"]: item["output"] for request in server.requests for item in request.body.get("input", [])
            if item.get("type") == "function_call_output"}
    return {
        "final": found["final"],
        "wired": [float(line.split()[1]) for line in found["executed"]],
        "pending": bool(found["pending"]),
        "told": {call_id: _amounts_as_floats(output) for call_id, output in told.items()},
    }


def _amounts_as_floats(output: str) -> str:
    """A tool's output with its amount as Python writes it ("sent 5" in JavaScript is "sent 5.0")."""
    verb, _, amount = output.partition(" ")
    return f"{verb} {float(amount)}" if verb == "sent" else output


async def run(store: Store, env: dict[str, str], decided_by: str, resumed_by: str, decision: str) -> dict[str, Any]:
    run_id = f"decided-{uuid.uuid4().hex[:8]}"
    with FakeModelServer(SCRIPT) as server:
        if decided_by == "python":
            await decided_in_python(store, run_id, decision, server)
        else:
            assert node(env, server, "pause-decided", "banker", json.dumps("send 5, then 7"), run_id, decision) == {"pending": ["w1"]}
        if resumed_by == "python":
            found = await resumed_in_python(store, run_id, server)
        else:
            found = node(env, server, "resume", "banker", run_id, "{}")
        return outcome(found, server)


@pytest.mark.parametrize("decision", DECISIONS)
@pytest.mark.parametrize(("decided_by", "resumed_by"), [("javascript", "python"), ("python", "javascript")])
async def test_a_decision_saved_in_one_sdk_holds_in_the_other(
    database: tuple[Store, dict[str, str]], decision: str, decided_by: str, resumed_by: str
) -> None:
    store, env = database
    crossed = await run(store, env, decided_by, resumed_by, decision)
    assert crossed == await run(store, env, resumed_by, resumed_by, decision)
    assert crossed == await run(store, env, decided_by, decided_by, decision)
