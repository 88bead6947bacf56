"""Crash recovery in JavaScript: a durable run of timestep's JS module (js/index.mjs, the stock
@openai/agents) killed (SIGKILL) at a step boundary, recovered by another Node process with
`RunStateStore.recover()`, ends as an uninterrupted run does: the same model requests, the same
output; a tool whose output was journaled ran once, and only a tool that was running when the
process died runs again, with the same toolCallKey(). Each SDK refuses the other's journal."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

import crashy
from conftest import require_postgres
from test_crosslang_runs import node as durable_node
from test_recovery import as_if_died, bodies, without_ids, check_tools_and_end, child, journaled_calls, killed, wait_for_lease_to_expire
from timestep.errors import InvalidJournal
from timestep import open_store
from timestep.run_state import RunStateStore
from timestep.session import Session
from timestep.store import Store
from timestep.store.node import find_node
from timestep.testing import FakeModelServer, RecordedRequest, Reply, call, text
from timestep.worker import Worker

pytestmark = pytest.mark.anyio

CRASHY = Path(__file__).parent / "js" / "crashy.mjs"
# Where the tests kill the run: as step_b is about to run (the model response asking for it
# journaled), after a tool's output, inside a tool, after one of a parallel pair has returned.
CRASH_POINTS = ["tool_start:step_b", "tool_end:step_a", "tool_body:step_b", "tool_end:pair_c"]


def node_env(name: str, server: FakeModelServer, **extra: str) -> dict[str, str]:
    """The environment of a Node child on the store `name` (a URI, or a PGlite directory this
    process's sidecar serves)."""
    env = {key: value for key, value in os.environ.items() if key not in ("PG_CONNECTION_URI", "TIMESTEP_PGLITE_DIR")}
    env["PG_CONNECTION_URI" if name.startswith("postgresql") else "TIMESTEP_PGLITE_DIR"] = name
    return {**env, "FAKE_MODEL_URL": server.base_url, **extra}


def node(name: str, server: FakeModelServer, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [find_node(), str(CRASHY), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=node_env(name, server, **env), cwd=CRASHY.parent,
    )


def finished(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-4000:]
    return json.loads(out)  # type: ignore[no-any-return]


# The uninterrupted runs, by environment: a plain run touches no database, so one per
# environment serves every test (each is a Node process of its own).
_BASELINES: dict[tuple[tuple[str, str], ...], tuple[list[Any], Any]] = {}


def uninterrupted(name: str, ledger: Path, **env: str) -> tuple[list[Any], Any]:
    """The requests and output of the JS crashy run done in one go (not durable)."""
    key = tuple(sorted(env.items()))
    if key not in _BASELINES:
        with FakeModelServer([crashy.answer] * 12) as server:
            output = finished(node(name, server, "plain", f"baseline-{uuid.uuid4().hex[:8]}", **env))["final"]
        assert sorted(crashy.executions(ledger)) == ["pair_c 3", "pair_d 4", "step_a 1", "step_b 2"]
        ledger.unlink()
        _BASELINES[key] = bodies(server.requests), output
    return _BASELINES[key]


async def check_recovery(
    name: str, store: Store, ledger: Path, server: FakeModelServer, run_id: str, baseline: tuple[list[Any], Any],
    *, repeated: int = 0, **env: str,
) -> None:
    """Recover the killed run `run_id` in Node and compare it with `baseline`: `repeated` model
    requests were in flight when the process died, and are made again."""
    before = crashy.executions(ledger)
    journaled = await journaled_calls(store, run_id)
    requests_before = len(server.requests)
    await wait_for_lease_to_expire(store, run_id)
    assert finished(node(name, server, "recover", run_id, **env)) == {"final": baseline[1]}
    made = bodies(server.requests)
    assert len(made) == len(baseline[0]) + repeated, (requests_before, len(made))
    assert made[:requests_before - repeated] + made[requests_before:] == baseline[0]
    await check_tools_and_end(store, ledger, run_id, before, journaled, baseline[1], no_key="null")


@pytest.mark.parametrize("stream", [False, True], ids=["run", "stream"])
@pytest.mark.parametrize("crash_at", CRASH_POINTS)
async def test_a_js_run_killed_at_a_step_boundary_recovers_from_its_journal(
    named_store: tuple[str, Store], ledger: Path, crash_at: str, stream: bool
) -> None:
    name, store = named_store
    baseline = uninterrupted(name, ledger)
    run_id = f"js-crash-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([crashy.answer] * 10) as server:
        killed(node(name, server, "start", run_id, "stream" if stream else "run", CRASH_AT=crash_at))
        await check_recovery(name, store, ledger, server, run_id, baseline)


async def test_a_js_run_killed_in_the_middle_of_a_streamed_response_recovers(named_store: tuple[str, Store], ledger: Path) -> None:
    name, store = named_store
    baseline = uninterrupted(name, ledger)
    run_id = f"js-crash-{uuid.uuid4().hex[:8]}"
    doomed: list[subprocess.Popen[str]] = []
    with FakeModelServer([crashy.answer_cutting_the_third_stream(doomed)] * 10) as server:
        doomed.append(node(name, server, "start", run_id, "stream"))
        killed(doomed[0])
        assert len(server.requests) == 3
        await check_recovery(name, store, ledger, server, run_id, baseline, repeated=1)


async def test_a_js_run_killed_after_an_approval_recovers_with_it(named_store: tuple[str, Store], ledger: Path) -> None:
    """The run pauses for step_b's approval; Node resumes it with the approval given in memory
    and is killed after pair_c; the recovery resumes with the approval its claim recorded, and
    replays the resumed segment's journal (step_b's output among it)."""
    name, store = named_store
    baseline = uninterrupted(name, ledger)
    run_id = f"js-crash-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([crashy.answer] * 10) as server:
        assert finished(node(name, server, "start", run_id, "run", CRASHY_APPROVE_B="1")) == {"pending": ["b2"]}
        killed(node(name, server, "resume", run_id, CRASH_AT="tool_end:pair_c", CRASHY_APPROVE_B="1"))
        assert "b2" in await journaled_calls(store, run_id)
        decisions = await store.fetchval("SELECT decisions FROM run_states WHERE run_id = $1 AND active", run_id)
        assert decisions == {"b2": {"approved": True}}
        await check_recovery(name, store, ledger, server, run_id, baseline, CRASHY_APPROVE_B="1")


async def test_a_js_run_killed_after_a_handoff_recovers_with_the_agent_it_handed_off_to(
    named_store: tuple[str, Store], ledger: Path
) -> None:
    name, store = named_store
    baseline = uninterrupted(name, ledger, CRASHY_TRIAGE="1")
    run_id = f"js-crash-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([crashy.answer] * 12) as server:
        killed(node(name, server, "start", run_id, "run", CRASH_AT="tool_end:step_b", CRASHY_TRIAGE="1"))
        await check_recovery(name, store, ledger, server, run_id, baseline, CRASHY_TRIAGE="1")
        assert [request.body["instructions"] for request in server.requests].count("route") == 1


async def run_row(store: Store, run_id: str) -> dict[str, Any]:
    row = await store.fetchrow("SELECT status, lease_owner, lease_expires_at, error FROM run_states WHERE run_id = $1 AND active", run_id)
    assert row is not None
    return row


async def test_python_refuses_a_journal_javascript_wrote_and_javascript_recovers_it(
    named_store: tuple[str, Store], ledger: Path
) -> None:
    """Python cannot replay the JS SDK's steps: its recovery says so before claiming the run,
    which is left as it was (running nothing); a Node recovery then finishes the run, no
    journaled tool running again."""
    name, store = named_store
    baseline = uninterrupted(name, ledger)
    run_id = f"js-crash-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([crashy.answer] * 10) as server:
        killed(node(name, server, "start", run_id, "run", CRASH_AT="tool_end:step_b"))
        await wait_for_lease_to_expire(store, run_id)
        requests, dead = len(server.requests), await run_row(store, run_id)
        with pytest.raises(InvalidJournal, match="written by the JavaScript SDK; recover it from JavaScript"):
            await RunStateStore(crashy.make_agent(server.base_url), run_id, store=store).recover()
        assert len(server.requests) == requests
        assert crashy.executions(ledger) == ["step_a 1", "step_b 2"]
        assert await run_row(store, run_id) == dead
        assert finished(node(name, server, "recover", run_id)) == {"final": baseline[1]}
        assert len(server.requests) == len(baseline[0])
    assert sorted(crashy.executions(ledger)) == ["pair_c 3", "pair_d 4", "step_a 1", "step_b 2"]


async def test_a_python_worker_leaves_a_run_javascript_journaled(tmp_path: Path, ledger: Path) -> None:
    """A worker takes every run whose process died, but not one the JavaScript SDK was running
    (it cannot replay it): the run stays for JavaScript's recover()."""
    name = str(tmp_path / "db")  # a database of its own: a worker takes every dead run it finds
    async with await open_store(pglite_path=name) as store:
        run_id = f"js-crash-{uuid.uuid4().hex[:8]}"
        with FakeModelServer([crashy.answer] * 10) as server:
            killed(node(name, server, "start", run_id, "run", CRASH_AT="tool_end:step_b"))
            await wait_for_lease_to_expire(store, run_id)
            dead = await run_row(store, run_id)
            assert await Worker(crashy.make_agent(server.base_url), store=store).run_once() == 0
            assert await run_row(store, run_id) == dead
            assert finished(node(name, server, "recover", run_id)) == {"final": "done"}


async def test_javascript_refuses_a_journal_python_wrote(named_store: tuple[str, Store], ledger: Path) -> None:
    name, store = named_store
    run_id = f"py-crash-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([crashy.answer] * 10) as server:
        killed(child("start", name, run_id, server, CRASH_AT="tool_end:step_b"))
        await wait_for_lease_to_expire(store, run_id)
        requests, dead = len(server.requests), await run_row(store, run_id)
        process = node(name, server, "recover", run_id)
        out, err = process.communicate(timeout=120)
        assert process.returncode != 0 and "InvalidJournal" in err and "written by the Python SDK" in err, err[-2000:]
        assert len(server.requests) == requests
        assert await run_row(store, run_id) == dead  # left for Python's recovery
    assert crashy.executions(ledger) == ["step_a 1", "step_b 2"]


def nested_answer(request: RecordedRequest) -> Reply:
    """outer asks inner (a tool), then answers; inner and the guardrail's checker answer at once."""
    instructions = request.body.get("instructions")
    if instructions == "outer":
        if any(item.get("type") == "function_call_output" for item in request.body.get("input", [])):
            return text("outer done")
        return call("ask_inner", {"input": "hi"}, call_id="i1")
    return text(f"{instructions} says ok")


async def test_runs_begun_inside_a_js_run_are_not_its_steps(named_store: tuple[str, Store]) -> None:
    name, store = named_store
    run_id = f"js-nested-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([nested_answer] * 6) as server:
        process = subprocess.run(
            [find_node(), str(CRASHY.parent / "nested.mjs"), run_id], capture_output=True, text=True, timeout=120,
            env=node_env(name, server), cwd=CRASHY.parent,
        )
        assert process.returncode == 0, process.stderr[-4000:]
        assert json.loads(process.stdout) == {"final": "outer done"}
        assert sorted(request.body["instructions"] for request in server.requests) == ["check", "inner", "outer", "outer"]
    steps = await store.fetch("SELECT kind, turn, call_id FROM run_steps WHERE run_id = $1 ORDER BY seq", run_id)
    assert [(step["kind"], step["turn"], step["call_id"]) for step in steps] == [("model", 0, ""), ("tool", 1, "i1"), ("model", 1, "")]


async def test_a_js_durable_run_hands_a_tool_s_approval_policy_the_parsed_input(named_store: tuple[str, Store]) -> None:
    """The journal hooks a function tool's call only: the SDK's other uses of the tool (here,
    parsing its input for the approval policy) are as in a plain run."""
    name, store = named_store
    outcomes = []
    for mode in ("plain", "durable"):
        with FakeModelServer([call("count", {}, call_id="n1"), text("ok")]) as server:
            process = subprocess.run(
                [find_node(), str(CRASHY.parent / "approval_input.mjs"), mode, f"js-input-{uuid.uuid4().hex[:8]}"],
                capture_output=True, text=True, timeout=120, env=node_env(name, server), cwd=CRASHY.parent,
            )
            assert process.returncode == 0, process.stderr[-4000:]
            outputs = [item["output"] for request in server.requests for item in request.body["input"] if item.get("type") == "function_call_output"]
        outcomes.append((json.loads(process.stdout), outputs))
    assert outcomes == [({"seen": [{"n": 3}], "pending": 0, "final": "ok"}, ["counted 3"])] * 2


def pays_twice(request: RecordedRequest) -> Reply:
    """wire_money(5), then wire_money(7), then "done"."""
    outputs = [item for item in request.body.get("input", []) if item.get("type") == "function_call_output"]
    if len(outputs) == 2:
        return text("done")
    return call("wire_money", {"amount": 5 + 2 * len(outputs)}, call_id=f"w{len(outputs) + 1}")


async def test_an_approval_for_every_call_given_in_javascript_survives_a_recovery(database: tuple[Store, dict[str, str]]) -> None:
    """Approved with alwaysApprove in the Node process that resumes the run: wire_money's next
    call runs without a pause; recovered, the run replays both calls from its journal, and
    neither pauses nor runs again."""
    store, env = database
    run_id = f"js-always-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([pays_twice] * 8) as server:
        assert durable_node(env, server, "pause", "banker", json.dumps("send 5, then 7"), run_id) == {"pending": ["w1"]}
        resumed = durable_node(env, server, "claim", "banker", run_id, json.dumps({"w1": "always approve"}))
        assert resumed == {"final": "done", "executed": ["wire_money 5", "wire_money 7"], "pending": 0}
        await as_if_died(store, run_id)
        assert durable_node(env, server, "recover", "banker", run_id) == {"final": "done", "executed": [], "pending": 0}


@pytest.mark.parametrize("stream", [False, True], ids=["run", "stream"])
@pytest.mark.parametrize("crash_at", ["tool_end:step_b", "session_written"])
async def test_a_js_run_with_a_session_recovers_its_conversation(
    named_store: tuple[str, Store], ledger: Path, stream: bool, crash_at: str
) -> None:
    """A timestep Session's writes are journaled in JavaScript too (the JS SDK writes a run's
    conversation as the run ends): recovered in the session its journal names, whether it died
    before or after that write, the conversation holds what an uninterrupted run leaves, once."""
    name, store = named_store
    with FakeModelServer([crashy.answer] * 12) as server:
        baseline = finished(node(name, server, "plain", f"baseline-{uuid.uuid4().hex[:8]}", CRASHY_SESSION="1"))
    ledger.unlink()
    run_id = f"js-crash-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([crashy.answer] * 10) as server:
        killed(node(name, server, "start", run_id, "stream" if stream else "run", CRASH_AT=crash_at, CRASHY_SESSION="1"))
        steps = await store.fetch("SELECT call_id FROM run_steps WHERE run_id = $1 AND kind = 'session' ORDER BY seq", run_id)
        # The session, named as the run began; and its conversation, if written before the kill.
        assert [step["call_id"] for step in steps] == ["opened", ""] if crash_at == "session_written" else ["opened"]
        await wait_for_lease_to_expire(store, run_id)
        recovered = finished(node(name, server, "recover", run_id, CRASHY_SESSION="1"))
        assert len(server.requests) == 4
    assert recovered["final"] == baseline["final"] == "done"
    assert without_ids(recovered["items"]) == without_ids(baseline["items"])
    assert len(await Session(run_id, store=store).get_items()) == len(baseline["items"])
    assert sorted(crashy.executions(ledger)) == ["pair_c 3", "pair_d 4", "step_a 1", "step_b 2"]


def charging() -> Any:
    """A fresh charge_answer: the k-th request without a tool output asks for charge(k)."""
    asked: list[int] = []

    def answer(request: RecordedRequest) -> Reply:
        if any(item.get("type") == "function_call_output" for item in request.body.get("input", [])):
            return text("done")
        asked.append(len(asked) + 1)
        return call("charge", {"n": asked[-1]}, call_id=f"c{asked[-1]}")

    return answer


def edge_run(name: str, server: FakeModelServer, *args: str) -> dict[str, Any]:
    return finished(subprocess.Popen(
        [find_node(), str(CRASHY.parent / "edge_runs.mjs"), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=node_env(name, server), cwd=CRASHY.parent,
    ))


async def test_a_js_model_call_retried_after_a_timeout_is_journaled_once() -> None:
    """The SDK gives up on a model call that times out (here while its journal write waits on a
    lock) and retries it; the abandoned attempt's write lands later. Both are the same step:
    the journal keeps one response for it, the one the run went on with, so a recovery replays
    the run as it ran and charges nobody again."""
    name = require_postgres()
    run_id = f"js-timeout-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([charging()] * 6) as server:
        out = edge_run(name, server, "timeout", run_id)
    [charged] = out["ran"]
    assert (out["final"], out["recovered"], out["ranAgain"]) == ("done", "done", [])
    assert out["steps"] == [["model", 0, ""], ["model", 1, ""], ["tool", 1, f"c{charged}"]]


async def test_a_js_stream_left_before_its_end_is_recorded_failed_and_recovers(named_store: tuple[str, Store]) -> None:
    name, store = named_store
    run_id = f"js-cancel-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([charging()] * 6) as server:
        cancelled = edge_run(name, server, "cancel", run_id)
        assert cancelled["cancelled"] is True
        row = await store.fetchrow("SELECT status, error FROM run_states WHERE run_id = $1 AND active", run_id)
        assert row is not None and (row["status"], row["error"]) == ("failed", "Error: the stream was cancelled before the run ended")
        recovered = edge_run(name, server, "recover", run_id)
    assert recovered["recovered"] == "done" and len(cancelled["ran"]) + len(recovered["ran"]) == 1
