"""A durable run's lifecycle (run_agent with a run_store): claimed before anything runs, held
under a lease, recorded as it ends; an approved tool call runs once, whoever resumes the run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

import banker
from conftest import child_env
from timestep.errors import InvalidDecision, InvalidRunState, RunNotResumable
from timestep.run_state import RunStateStore
from timestep.runner import consume_result, run_agent
from timestep.session import Session
from timestep.store import Store
from timestep.testing import FakeModelServer, RecordedRequest, Reply, call, error, text

pytestmark = pytest.mark.anyio

# A child process on the same store: `resume-when-told` loads the run, approves its calls, says
# "ready", waits for "go", resumes it and prints the outcome; `start-and-hang` starts the run on
# new input under a 2-second lease (the test holds its model call until it kills the child).
CHILD = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[3])
import banker
from timestep import open_store
from timestep.errors import RunNotResumable
from timestep.run_state import RunStateStore
from timestep.runner import run_agent
from timestep.session import Session

async def resume_when_told(store, agent, run_id):
    runs = RunStateStore(agent, run_id, store=store)
    state = await runs.load()
    for item in state.get_interruptions():
        state.approve(item)
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        result = await run_agent(agent, state, Session(run_id, store=store), run_store=runs)
        outcome = {"final": result.final_output}
    except RunNotResumable as exc:
        outcome = {"refused": exc.reason}
    print(json.dumps({**outcome, "executed": banker.executed}), flush=True)

async def start_and_hang(store, agent, run_id):
    await run_agent(agent, "send 5", run_store=RunStateStore(agent, run_id, store=store, lease_seconds=2))

async def main(target, run_id, action):
    uri, path = (target, None) if target.startswith("postgresql") else (None, target)
    async with await open_store(uri, pglite_path=path) as store:
        await {"resume-when-told": resume_when_told, "start-and-hang": start_and_hang}[action](store, banker.make_agent(), run_id)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[4]))
"""


def child(action: str, name: str, run_id: str, server: FakeModelServer) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, name, run_id, str(Path(banker.__file__).parent), action],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=child_env(FAKE_MODEL_URL=server.base_url),
    )


def where(name: str) -> list[str]:
    """The CLI options that name the target's database."""
    return ["--uri", name] if name.startswith("postgresql") else ["--pglite-path", name]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "timestep", *args], capture_output=True, text=True, env=child_env(), timeout=300)


async def paused_run(store: Store, server: FakeModelServer, **runs: Any) -> RunStateStore:
    """A durable run paused for approval of one wire_money call."""
    agent = banker.make_agent(server.base_url)
    session = Session(store=store)
    durable = RunStateStore(agent, session.session_id, store=store, **runs)
    result = await run_agent(agent, "send 5", session, run_store=durable)
    assert [i.raw_item.call_id for i in result.interruptions] == ["call_1_0"]
    return durable


async def active_row(store: Store, run_id: str) -> dict[str, Any]:
    row = await store.fetchrow("SELECT * FROM run_states WHERE run_id = $1 AND active", run_id)
    assert row is not None
    return row


async def test_two_processes_resume_the_same_run_and_the_tool_runs_once(named_store: tuple[str, Store]) -> None:
    name, store = named_store
    with FakeModelServer([call("wire_money", {"amount": 5}), text("Sent 5.")]) as server:
        runs = await paused_run(store, server)
        children = [child("resume-when-told", name, runs.session_id, server) for _ in range(2)]
        for process in children:
            assert process.stdout is not None and process.stdout.readline() == "ready\n", process.communicate()[1]
        for process in children:  # as close to the same moment as two writes get
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outcomes = []
        for process in children:
            out, err = process.communicate(timeout=300)
            assert process.returncode == 0, err
            outcomes.append(json.loads(out.strip().splitlines()[-1]))
        assert len(server.requests) == 2  # the pause, and one resume: the refused process called no model
    assert sorted(json.dumps(o, sort_keys=True) for o in outcomes) == sorted(
        [json.dumps({"final": "Sent 5.", "executed": ["wire_money 5.0"]}, sort_keys=True),
         json.dumps({"refused": outcomes[0].get("refused") or outcomes[1].get("refused"), "executed": []}, sort_keys=True)]
    )
    assert {o.get("refused") for o in outcomes} - {None} <= {"held", "superseded"}
    row = await active_row(store, runs.session_id)
    assert (row["status"], row["final_output"], row["lease_expires_at"]) == ("finished", "Sent 5.", None)  # released
    items = await Session(runs.session_id, store=store).get_items()
    assert [item.get("type") for item in items].count("function_call_output") == 1


async def test_a_finished_run_cannot_be_resumed_again(named_store: tuple[str, Store]) -> None:
    _, store = named_store
    banker.executed.clear()
    with FakeModelServer([call("wire_money", {"amount": 5}), text("Sent 5.")]) as server:
        runs = await paused_run(store, server)
        state = await runs.load()
        state.approve(state.get_interruptions()[0])
        session = Session(runs.session_id, store=store)
        result = await run_agent(runs.agent, state, session, run_store=runs)
        assert result.final_output == "Sent 5." and banker.executed == ["wire_money 5.0"]
        # The same state again: the run it came from is finished.
        with pytest.raises(RunNotResumable) as stale:
            await run_agent(runs.agent, state, session, run_store=runs)
        assert stale.value.reason == "finished" and "is finished" in str(stale.value)
        # Nor can it be loaded again to be resumed.
        with pytest.raises(RunNotResumable) as finished:
            await runs.load()
        assert finished.value.reason == "finished"
        assert len(server.requests) == 2
    assert banker.executed == ["wire_money 5.0"]
    [run] = [r for r in await RunStateStore.list_runs(store) if r.run_id == runs.session_id]
    assert (run.status, run.final_output, run.pending_approvals) == ("finished", "Sent 5.", 0)
    # Started on the input; its pause, resumed and finished (the row keeps the paused state).
    assert [h["status"] for h in await runs.history()] == ["running", "finished"]


async def test_a_streamed_run_is_recorded_when_its_stream_ends(named_store: tuple[str, Store]) -> None:
    _, store = named_store
    with FakeModelServer([call("wire_money", {"amount": 5}), text("Sent 5.")]) as server:
        agent = banker.make_agent(server.base_url)
        session = Session(store=store)
        runs = RunStateStore(agent, session.session_id, store=store)
        result = await consume_result(await run_agent(agent, "send 5", session, stream=True, run_store=runs))
        assert (await active_row(store, runs.session_id))["status"] == "interrupted"
        state = await runs.load()
        state.approve(state.get_interruptions()[0])
        streamed = await run_agent(agent, state, session, stream=True, run_store=runs)
        assert (await active_row(store, runs.session_id))["status"] == "running"  # held while it streams
        result = await consume_result(streamed)
    assert result.final_output == "Sent 5."
    row = await active_row(store, runs.session_id)
    assert (row["status"], row["final_output"], row["lease_expires_at"]) == ("finished", "Sent 5.", None)  # released


async def test_a_failed_run_keeps_its_state_and_can_be_retried(named_store: tuple[str, Store]) -> None:
    name, store = named_store
    banker.executed.clear()
    with FakeModelServer([call("wire_money", {"amount": 5}), error(400, "bad request"), text("Sent 5.")]) as server:
        runs = await paused_run(store, server)
        state = await runs.load()
        state.approve(state.get_interruptions()[0])
        with pytest.raises(Exception, match="bad request"):
            await run_agent(runs.agent, state, Session(runs.session_id, store=store), run_store=runs)
        row = await active_row(store, runs.session_id)
        assert row["status"] == "failed" and "bad request" in row["error"] and row["lease_owner"] is not None
        assert row["lease_expires_at"] is None  # released
        shown = cli("runs", "show", *where(name), runs.session_id).stdout
        assert "1 tool call waiting for approval (failed: " in shown and "bad request" in shown
        # The state it started from waits for a retry, with the approval given in memory
        # recorded when the run was claimed.
        assert [call.decision for call in await RunStateStore.pending_calls(runs.session_id, store)] == [{"approved": True}]
        assert banker.executed == ["wire_money 5.0"]
        retried = await run_agent(runs.agent, await runs.load(), Session(runs.session_id, store=store), run_store=runs)
    assert retried.final_output == "Sent 5."
    assert banker.executed == ["wire_money 5.0"]  # its output was journaled before the model failed: replayed
    assert (await active_row(store, runs.session_id))["status"] == "finished"
    items = await Session(runs.session_id, store=store).get_items()
    assert [item.get("type") for item in items].count("function_call_output") == 1


async def test_a_run_held_by_a_killed_process_is_taken_once_its_lease_expires(named_store: tuple[str, Store]) -> None:
    name, store = named_store
    in_flight, release = threading.Event(), threading.Event()

    def hang(request: RecordedRequest) -> Reply:
        in_flight.set()
        release.wait(60)
        return text("never seen")

    with FakeModelServer([hang, text("Done.")]) as server:
        run_id = f"held-{uuid.uuid4()}"
        holder = child("start-and-hang", name, run_id, server)
        try:
            assert in_flight.wait(120), holder.communicate()[1] if holder.poll() is not None else "no model call"
            row = await active_row(store, run_id)
            assert (row["status"], row["input"]) == ("running", "send 5") and row["lease_owner"].split(":")[1] == str(holder.pid)
            agent = banker.make_agent(server.base_url)
            runs = RunStateStore(agent, run_id, store=store)
            with pytest.raises(RunNotResumable) as held:
                await run_agent(agent, "send 5", run_store=runs)
            assert held.value.reason == "held" and held.value.lease_owner == row["lease_owner"]
            # The operator sees who holds it, and cannot decide on it meanwhile.
            listed = cli("runs", "list", *where(name))
            line = next(line for line in listed.stdout.splitlines() if line.startswith(run_id))
            cells = [cell.strip() for cell in line.split(" | ")]
            assert cells[2] == "running" and cells[-1].startswith(f"held by {row['lease_owner']} until")
            refused = cli("runs", "approve", *where(name), run_id)
            assert refused.returncode == 1 and f"is being run by {row['lease_owner']}" in refused.stderr
            holder.send_signal(signal.SIGKILL)
            holder.wait()
        finally:
            release.set()
            holder.kill()
        # The lease (2 s, renewed every third of it) outlives the kill by less than that: wait it out.
        await store.fetchval("SELECT pg_sleep(greatest(0, extract(epoch FROM $1::timestamptz - clock_timestamp())))",
                             (await active_row(store, run_id))["lease_expires_at"])
        result = await run_agent(agent, "send 5", run_store=runs)
    assert result.final_output == "Done."
    history = await runs.history()
    # The killed process's start; this process's start (taken over), finished.
    assert [(h["status"], h["active"]) for h in history] == [("running", False), ("finished", True)]


@pytest.mark.parametrize(
    ("decisions", "problem"),
    [
        ({"call_1_0": {"approved": "false"}}, 'is {"approved": "false"}'),
        ({"call_1_0": {"approved": True, "by": "me"}}, "call_1_0"),
        ({"call_1_0": "yes"}, 'is "yes"'),
        (["call_1_0"], "are a JSON list"),
        ("approve", "are a JSON str"),
    ],
    ids=["string-approved", "extra-field", "string-decision", "array", "string"],
)
async def test_a_bad_decision_is_a_typed_error_and_changes_nothing(
    named_store: tuple[str, Store], decisions: Any, problem: str
) -> None:
    _, store = named_store
    with FakeModelServer([call("wire_money", {"amount": 5})]) as server:
        runs = await paused_run(store, server)
        await store.execute("UPDATE run_states SET decisions = $2::jsonb WHERE run_id = $1 AND active", runs.session_id, json.dumps(decisions))
        before = await active_row(store, runs.session_id)
        for read in (runs.load(), RunStateStore.pending_calls(runs.session_id, store)):
            with pytest.raises(InvalidDecision) as refused:
                await read
            assert runs.session_id in str(refused.value) and problem in str(refused.value)
        assert await active_row(store, runs.session_id) == before
        assert len(server.requests) == 1
    with pytest.raises(InvalidDecision):
        await RunStateStore.decide(runs.session_id, approve="false", store=store)  # type: ignore[arg-type]


async def test_an_interruption_that_is_not_a_tool_call_is_a_typed_error(named_store: tuple[str, Store]) -> None:
    _, store = named_store
    with FakeModelServer([call("wire_money", {"amount": 5})]) as server:
        runs = await paused_run(store, server)
    await store.execute(
        "UPDATE run_states SET state = json_build_object('$schemaVersion', state->'$schemaVersion', 'current_turn', 1, "
        "'current_agent', state->'current_agent', 'original_input', 'x', 'model_responses', '[]'::json, "
        "'generated_items', '[]'::json, 'max_turns', 10, 'current_step', "
        "json_build_object('type', 'next_step_interruption', 'data', json_build_object('interruptions', json_build_array("
        "json_build_object('type', 'tool_approval_item', 'raw_item', 'wire_money'))))) WHERE run_id = $1 AND active",
        runs.session_id,
    )
    before = await active_row(store, runs.session_id)
    with pytest.raises(InvalidRunState, match="not a tool call"):
        await runs.load()
    with pytest.raises(InvalidRunState, match="not a tool call"):
        await RunStateStore.pending_calls(runs.session_id, store)
    assert await active_row(store, runs.session_id) == before
