"""Paused runs both SDKs can make from the same script, and how a resumed one is checked.

Each scenario: the graph (tests/banker.py and tests/js/banker.mjs), the prompt, the fake
model's replies up to the pause, and a decision per pending call ("approve" or a rejection
message). After the pause the model answers "done".
"""

from __future__ import annotations

from typing import Any

from timestep.testing import FakeModelServer, FunctionCall, Reply, call

SCENARIOS: dict[str, tuple[str, Any, list[Reply], dict[str, str]]] = {
    "one approval": ("banker", "send 5", [call("wire_money", {"amount": 5})], {"call_1_0": "approve"}),
    "two parallel, one rejected": (
        "banker",
        [{"role": "user", "content": [{"type": "input_text", "text": "send 5, close x"}]}],
        [
            Reply(
                text="On it.",
                calls=(FunctionCall("wire_money", '{"amount": 5}'), FunctionCall("close_account", '{"account": "x"}')),
            )
        ],
        {"call_1_0": "approve", "call_1_1": "not today"},
    ),
    "handoff before the pause": (
        "triage",
        "send 5",
        [call("transfer_to_banker"), call("wire_money", {"amount": 5}, reasoning="they want money sent")],
        {"call_2_0": "approve"},
    ),
}


def apply_decisions(state: Any, decisions: dict[str, str]) -> None:
    """Approve or reject each pending call of a Python RunState as `decisions` says."""
    for item in state.get_interruptions():
        decision = decisions.get(item.raw_item.call_id)
        if decision == "approve":
            state.approve(item)
        elif decision is not None:
            state.reject(item, rejection_message=decision)


def tool_outputs(server: FakeModelServer) -> list[Any]:
    """What the model was told each call returned, in its last request."""
    return [item["output"] for item in server.requests[-1].body["input"] if item.get("type") == "function_call_output"]


def check_outcome(outcome: dict[str, Any], decisions: dict[str, str], server: FakeModelServer, executed: str) -> None:
    """The run finished, approved calls ran (`executed` among them), rejected ones did not,
    and the model was told each rejection message."""
    rejected = [message for message in decisions.values() if message != "approve"]
    assert outcome["final"] == "done" and outcome["pending"] == 0
    assert executed in outcome["executed"]
    assert len(outcome["executed"]) == len(decisions) - len(rejected)
    assert [output for output in tool_outputs(server) if output in rejected] == rejected
