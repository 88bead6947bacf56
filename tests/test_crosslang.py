"""The state converter: a run paused by one SDK resumes in the other.

Every resume here is the real SDK: Python's Runner in this process, the stock @openai/agents
in Node (tests/js/sdk_state.mjs), both against the fake model server.
"""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
from agents import Runner
from agents.run_state import RunState
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import banker
from scenarios import SCENARIOS, apply_decisions, check_outcome, tool_outputs
from timestep.crosslang import CARRY, SUPPORTED_PAIRS, detect_sdk, js_to_python, python_to_js
from timestep.invocations import _js_fingerprint
from timestep.errors import InvalidRunState, UnconvertibleRunState, UnsupportedSchemaVersion
from timestep.store.node import find_node
from timestep.testing import FakeModelServer, FunctionCall, Reply, call, text

DATA = Path(__file__).parent / "data"
SDK_STATE = Path(__file__).parent / "js" / "sdk_state.mjs"
PY_SAMPLE = DATA / "runstate-py-openai-agents-0.24.0.json"  # ../shared/samples: one paused run
JS_SAMPLE = DATA / "runstate-js-agents-0.20.0.json"

pytestmark = pytest.mark.anyio


def node(*args: str, server: FakeModelServer) -> Any:
    done = subprocess.run(
        [find_node(), str(SDK_STATE), *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, "FAKE_MODEL_URL": server.base_url},
        cwd=SDK_STATE.parent,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def js_resume(graph: str, document: dict[str, Any], decisions: dict[str, str], server: FakeModelServer, tmp_path: Path) -> Any:
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(document))
    return node("resume", graph, str(state_file), json.dumps(decisions), server=server)


async def py_pause(graph: str, prompt: Any, server: FakeModelServer) -> dict[str, Any]:
    result = await Runner.run(banker.make_graph(graph, server.base_url), prompt)
    assert result.interruptions
    return result.to_state().to_json()


async def py_resume(graph: str, document: dict[str, Any], decisions: dict[str, str], server: FakeModelServer) -> dict[str, Any]:
    agent = banker.make_graph(graph, server.base_url)
    state = await RunState.from_json(agent, document)
    apply_decisions(state, decisions)
    banker.executed.clear()
    result = await Runner.run(agent, state)
    return {"final": result.final_output, "executed": list(banker.executed), "pending": len(result.interruptions)}


# The shared samples: one paused run as each stock SDK writes it.


async def test_python_sample_resumes_in_javascript(tmp_path: Path) -> None:
    converted = python_to_js(json.loads(PY_SAMPLE.read_text()))
    assert converted["$schemaVersion"] == "1.22"
    with FakeModelServer([text("Sent.")]) as server:
        outcome = js_resume("banker", converted, {"call_3_0": "approve"}, server, tmp_path)
    assert outcome == {"final": "Sent.", "executed": ["wire_money 5"], "pending": 0}
    assert tool_outputs(server) == ["sent 5"]


async def test_javascript_sample_resumes_in_python() -> None:
    converted = js_to_python(json.loads(JS_SAMPLE.read_text()))
    assert converted["$schemaVersion"] == "1.21"
    with FakeModelServer([text("Sent.")]) as server:
        outcome = await py_resume("banker", converted, {"call_1_0": "approve"}, server)
    assert outcome == {"final": "Sent.", "executed": ["wire_money 5.0"], "pending": 0}
    assert tool_outputs(server) == ["sent 5.0"]


async def test_rejection_message_reaches_the_model_across_languages(tmp_path: Path) -> None:
    converted = python_to_js(json.loads(PY_SAMPLE.read_text()))
    with FakeModelServer([text("Not sent.")]) as server:
        outcome = js_resume("banker", converted, {"call_3_0": "over the limit"}, server, tmp_path)
    assert outcome["executed"] == [] and outcome["final"] == "Not sent."
    assert tool_outputs(server) == ["over the limit"]


# Both SDKs pause the same runs; each state resumes in the other SDK to the same end.


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_paused_in_python_resumed_in_javascript(scenario: str, tmp_path: Path) -> None:
    graph, prompt, script, decisions = SCENARIOS[scenario]
    with FakeModelServer([*script, text("done")]) as server:
        document = await py_pause(graph, prompt, server)
        outcome = js_resume(graph, python_to_js(document), decisions, server, tmp_path)
    check_outcome(outcome, decisions, server, executed="wire_money 5")


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_paused_in_javascript_resumed_in_python(scenario: str, tmp_path: Path) -> None:
    graph, prompt, script, decisions = SCENARIOS[scenario]
    with FakeModelServer([*script, text("done")]) as server:
        document = node("pause", graph, json.dumps(prompt), server=server)
        assert detect_sdk(document) == "javascript"
        outcome = await py_resume(graph, js_to_python(document), decisions, server)
    check_outcome(outcome, decisions, server, executed="wire_money 5.0")


async def test_a_run_that_already_executed_a_tool_converts(tmp_path: Path) -> None:
    """Completed calls carry JS's provenance records (fingerprints JS checks on load)."""
    script = [call("wire_money", {"amount": 5}), call("close_account", {"account": "x"}, call_id="call_9"), text("done")]
    with FakeModelServer(script) as server:
        agent = banker.make_agent(server.base_url)
        first = await Runner.run(agent, "send 5 then close x")
        state = first.to_state()
        state.approve(state.get_interruptions()[0])
        second = await Runner.run(agent, state)
        document = second.to_state().to_json()
        converted = python_to_js(document)
        assert converted["completedToolInvocations"][0]["invocations"]["call_1_0"].startswith('{"caller"')
        outcome = js_resume("banker", converted, {"call_9": "approve"}, server, tmp_path)
    assert outcome == {"final": "done", "executed": ["close_account x"], "pending": 0}


async def test_approvals_recorded_before_the_save_convert(tmp_path: Path) -> None:
    with FakeModelServer([call("wire_money", {"amount": 5}), text("done")]) as server:
        agent = banker.make_agent(server.base_url)
        state = (await Runner.run(agent, "send 5")).to_state()
        state.reject(state.get_interruptions()[0], rejection_message="no")
        outcome = js_resume("banker", python_to_js(state.to_json()), {}, server, tmp_path)
    assert outcome == {"final": "done", "executed": [], "pending": 0}
    assert tool_outputs(server) == ["no"]


# Versions and refusals


def test_supported_pairs_are_explicit() -> None:
    assert ("1.21", "1.22") in SUPPORTED_PAIRS


@pytest.mark.parametrize(
    ("sample", "convert", "version"),
    [(PY_SAMPLE, python_to_js, "1.20"), (PY_SAMPLE, python_to_js, "1.22"), (JS_SAMPLE, js_to_python, "1.21"), (JS_SAMPLE, js_to_python, None)],
)
def test_unknown_schema_versions_are_refused(sample: Path, convert: Any, version: str | None) -> None:
    document = json.loads(sample.read_text())
    document["$schemaVersion"] = version
    with pytest.raises(UnsupportedSchemaVersion, match=rf"\$schemaVersion {version!r}.*1\.21/1\.22"):
        convert(document)


def test_what_cannot_convert_is_named() -> None:
    document = json.loads(PY_SAMPLE.read_text())
    document["generated_items"][0]["raw_item"] = {"type": "computer_call", "call_id": "c", "action": {}}
    with pytest.raises(UnconvertibleRunState, match=r"generated_items\[0\]\.raw_item\.type: a 'computer_call' item"):
        python_to_js(document)
    document = json.loads(PY_SAMPLE.read_text())
    document["input_guardrail_results"] = [{"guardrail": {"name": "g"}, "output": {}}]
    with pytest.raises(UnconvertibleRunState, match=r"^input_guardrail_results: has entries"):
        python_to_js(document)
    document = json.loads(JS_SAMPLE.read_text())
    document["generatedItems"][1]["rawItem"]["type"] = "shell_call"
    with pytest.raises(UnconvertibleRunState, match=r"generatedItems\[1\]\.rawItem\.type: a 'shell_call' item"):
        js_to_python(document)
    assert issubclass(UnconvertibleRunState, InvalidRunState)


def test_documents_of_neither_sdk_are_refused() -> None:
    with pytest.raises(UnconvertibleRunState, match="not a run state"):
        detect_sdk({"hello": 1})
    with pytest.raises(UnconvertibleRunState, match=r"state: expected a JSON object"):
        python_to_js([])  # type: ignore[arg-type]
    assert detect_sdk(json.loads(PY_SAMPLE.read_text())) == "python"


def test_conversion_does_not_change_its_input() -> None:
    document = json.loads(PY_SAMPLE.read_text())
    before = copy.deepcopy(document)
    js_to_python(python_to_js(document))
    assert document == before


def without_carry(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: without_carry(item) for key, item in value.items() if key != CARRY}
    if isinstance(value, list):
        return [without_carry(item) for item in value]
    return value


def test_javascript_round_trip_keeps_what_javascript_wrote() -> None:
    """js -> py -> js: the same document, but for fields JS re-derives on load."""
    document = json.loads(JS_SAMPLE.read_text())
    back = without_carry(python_to_js(js_to_python(document)))
    for entry in back["generatedItems"] + back["lastProcessedResponse"]["newItems"]:
        entry.pop("functionToolStateKey", None) if entry["type"] == "tool_call_item" else None
    assert back == document


# Property: py -> js -> py is the identity, and the result resumes exactly as the original.

amounts = st.one_of(st.integers(-(10**6), 10**6), st.floats(allow_nan=False, allow_infinity=False, width=32))
tool_calls = st.lists(
    st.one_of(
        st.builds(lambda amount: ("wire_money", {"amount": amount}), amounts),
        st.builds(lambda account: ("close_account", {"account": account}), st.text(max_size=12)),
    ),
    min_size=1,
    max_size=3,
)
decisions_for = st.lists(st.one_of(st.just("approve"), st.text(min_size=1, max_size=20).filter(lambda m: m != "approve")), min_size=3, max_size=3)


prompts = st.one_of(
    st.text(min_size=1, max_size=20),
    st.builds(lambda words: [{"role": "user", "content": [{"type": "input_text", "text": words}]}], st.text(max_size=20)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prompt=prompts,
    handoff=st.booleans(),
    reasoning=st.one_of(st.none(), st.text(max_size=30)),
    preamble=st.one_of(st.none(), st.text(max_size=30)),
    made=tool_calls,
    answers=decisions_for,
    final=st.text(min_size=1, max_size=20),
)
def test_python_round_trip_resumes_to_the_same_result(
    prompt: Any,
    handoff: bool,
    reasoning: str | None,
    preamble: str | None,
    made: list[tuple[str, dict[str, Any]]],
    answers: list[str],
    final: str,
) -> None:
    """py -> js -> py gives back the very document, and resuming it sends the model the same
    request and ends the same way as resuming the original."""
    import asyncio

    graph = "triage" if handoff else "banker"
    turn = 2 if handoff else 1
    calls_made = tuple(FunctionCall(name, json.dumps(arguments)) for name, arguments in made)
    reply = Reply(text=preamble, calls=calls_made, reasoning=reasoning)
    script = [*([call("transfer_to_banker")] if handoff else []), reply, text(final)]
    decisions = {f"call_{turn}_{index}": answers[index] for index in range(len(made))}

    async def both() -> None:
        with FakeModelServer(script) as server:
            document = await py_pause(graph, prompt, server)
            round_tripped = js_to_python(python_to_js(document))
            assert round_tripped == document
            original = await py_resume(graph, document, decisions, server)
            original_request = server.requests[-1].body["input"]
        with FakeModelServer(script) as server:
            await py_pause(graph, prompt, server)
            converted = await py_resume(graph, round_tripped, decisions, server)
            assert server.requests[-1].body["input"] == original_request
        assert converted == original

    asyncio.run(both())


def random_arguments(rng: random.Random, depth: int = 0) -> str:
    """Function-call arguments as a model might write them: JSON in assorted spellings (number
    forms, spacing, escapes, NULs, the SDK's own tag prefix in strings), and now and then not JSON
    (JavaScript's JSON.parse refuses NaN and Infinity, where Python's json accepts them)."""

    def value(level: int) -> str:
        kind = rng.choice(["int", "float", "exp", "string", "tagged", "bool", "null"] + (["object", "array"] if level < 3 else []))
        if kind == "int":
            return str(rng.choice([0, -0, 5, -17, 10**20, 1200]))
        if kind == "float":
            return rng.choice(["5.0", "-0.0", "0.125", "1.50", "3.14159", "100.000"])
        if kind == "exp":
            return rng.choice(["1e3", "1E+3", "25e-2", "-7.5e-10", "0e0"])
        if kind == "string":
            return json.dumps(rng.choice(["", "x", "é ü", '"quoted" \\ back', "line\nbreak", "5", "☃ \u2028", "a\u0000b", "\\u0000 is no NUL"]), ensure_ascii=rng.random() < 0.5)
        if kind == "tagged":
            return json.dumps("\u0000openai-agents-json:number:5e0")
        if kind == "bool":
            return rng.choice(["true", "false"])
        if kind == "null":
            return "null"
        if kind == "array":
            return "[" + rng.choice([",", ", "]).join(value(level + 1) for _ in range(rng.randint(0, 3))) + "]"
        keys = rng.sample(["b", "a", "amount", "Z", "ä", "10", "account"], rng.randint(0, 4))
        return "{" + ", ".join(f'{json.dumps(key)}:{rng.choice(["", " "])}{value(level + 1)}' for key in keys) + "}"

    if rng.random() < 0.05:
        return rng.choice(["", "{", "not json", '{"a": 01}', "-", '"open', "NaN", '{"a": Infinity}', "[-Infinity]"])
    return value(depth)


def test_fingerprints_match_the_javascript_sdk() -> None:
    """The Python port of JS's getToolInvocationFingerprint, checked against the SDK's own code."""
    rng = random.Random(20261121)
    cases = []
    for index in range(400):
        call: dict[str, Any] = {"type": "function_call", "callId": f"c{index}", "name": "wire_money", "arguments": random_arguments(rng)}
        if index % 7 == 0:
            call["caller"] = {"type": "program", "callerId": f"p{index}"}
        tool_name = rng.choice(['["bare","wire_money"]', "handoff:transfer_to_banker", '["namespaced","bank","wire"]'])
        cases.append([tool_name, call])
    done = subprocess.run(
        [find_node(), str(SDK_STATE.parent / "fingerprints.mjs")],
        input=json.dumps(cases), capture_output=True, text=True, timeout=120, cwd=SDK_STATE.parent,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    expected = json.loads(done.stdout)
    for (tool_name, call), fingerprint in zip(cases, expected):
        assert _js_fingerprint(tool_name, call) == fingerprint, call["arguments"]
