"""Crash recovery: a durable run killed (SIGKILL) at a step boundary, recovered by another
process from its journal, ends as an uninterrupted run does: the same model requests, the same
session, the same output; a tool whose output was journaled ran once, and only a tool that was
running when the process died runs again."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, GuardrailFunctionOutput, RunHooks, Runner, function_tool, input_guardrail
from agents.exceptions import ModelBehaviorError
from pydantic import BaseModel

import crashy
from conftest import child_env
from timestep.errors import InvalidJournal, RunNotResumable
from timestep.run_state import RunStateStore
from timestep.runner import consume_result, run_agent
from timestep.advanced_session import AdvancedSession
from timestep.journal import RunJournal
from timestep.session import Session
from timestep import open_store, tool_call_key
from timestep.store import Store
from timestep.testing import FakeModelServer, RecordedRequest, Reply, call, text
from timestep.worker import Worker

pytestmark = pytest.mark.anyio

# A child process on the same store: `start` runs crashy's run on new input, `resume` loads the
# paused run, approves its calls and resumes it; `worker` recovers what one worker can take.
# Each durable run is held under a 1-second lease, so that a recovery need not wait long.
CHILD = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
import crashy
from timestep import open_store
from timestep.run_state import RunStateStore
from timestep.runner import consume_result, run_agent
from timestep.worker import Worker

async def main(target, run_id, action):
    uri, path = (target, None) if target.startswith("postgresql") else (None, target)
    async with await open_store(uri, pglite_path=path) as store:
        agent = crashy.make_agent()
        if action == "worker":
            print(json.dumps({"taken": await Worker(agent, store=store, lease_seconds=1).run_once()}), flush=True)
            return
        runs = RunStateStore(agent, run_id, store=store, lease_seconds=1)
        input = "go"
        if action.startswith("resume"):
            input = await runs.load()
            for item in input.get_interruptions():
                input.approve(item)
        result = await run_agent(agent, input, await crashy.session(run_id, store), stream=action.endswith("stream"),
                                 run_store=runs, hooks=crashy.CrashHooks())
        result = await consume_result(result)
        print(json.dumps({"final": result.final_output}), flush=True)

asyncio.run(main(sys.argv[2], sys.argv[3], sys.argv[4]))
"""

# Where the tests kill the run: after a model response, after a tool's output, inside a tool,
# and after one of a parallel pair has returned (the other may or may not have).
CRASH_POINTS = ["llm_end:2", "tool_end:step_a", "tool_body:step_b", "tool_end:pair_c"]


def child(action: str, name: str, run_id: str, server: FakeModelServer, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(Path(crashy.__file__).parent), name, run_id, action],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(FAKE_MODEL_URL=server.base_url, **env),
    )


def killed(process: subprocess.Popen[str]) -> None:
    """Wait for a child that must die of SIGKILL at its crash point."""
    out, err = process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL, f"the child was not killed at its crash point: {out}{err}"


async def wait_for_lease_to_expire(store: Store, run_id: str) -> None:
    """The dead process's lease runs out at a known moment: wait for that moment."""
    expires = await store.fetchval("SELECT lease_expires_at FROM run_states WHERE run_id = $1 AND active", run_id)
    await store.fetchval("SELECT pg_sleep(greatest(0, extract(epoch FROM $1::timestamptz - clock_timestamp())) + 0.05)", expires)


async def journaled_calls(store: Store, run_id: str) -> set[str]:
    """The tool calls whose outputs the run has journaled (in any of its segments)."""
    rows = await store.fetch("SELECT call_id FROM run_steps WHERE run_id = $1 AND kind = 'tool'", run_id)
    return {row["call_id"] for row in rows}


def without_ids(value: Any) -> Any:
    """`value` with item ids and the session-derived prompt cache key left out (they differ
    between two runs by the fake server's request numbers and the session's name)."""
    if isinstance(value, dict):
        return {k: without_ids(v) for k, v in value.items() if k not in ("id", "prompt_cache_key", "stream", "stream_options")}
    if isinstance(value, list):
        return [without_ids(v) for v in value]
    return value


def bodies(requests: list[RecordedRequest]) -> list[Any]:
    return [without_ids(request.body) for request in requests]


async def uninterrupted(store: Store, ledger: Path) -> tuple[list[Any], list[Any], Any]:
    """The requests, session and output of crashy's run done in one go (not durable)."""
    with FakeModelServer([crashy.answer] * 12) as server:
        session = Session(f"baseline-{uuid.uuid4().hex[:8]}", store=store)
        result = await run_agent(crashy.make_agent(server.base_url), "go", session)
        items = await session.get_items()
    assert crashy.executions(ledger) == ["step_a 1", "step_b 2", "pair_c 3", "pair_d 4"] or sorted(crashy.executions(ledger)) == [
        "pair_c 3", "pair_d 4", "step_a 1", "step_b 2"]
    ledger.unlink()
    return bodies(server.requests), without_ids(items), result.final_output


async def check_recovery(
    store: Store, ledger: Path, server: FakeModelServer, run_id: str, baseline: tuple[list[Any], list[Any], Any], *, repeated: int = 0
) -> None:
    """Recover the killed run `run_id` and compare it with `baseline`: `repeated` model requests
    were in flight when the process died, and are made again."""
    before = crashy.executions(ledger)
    journaled = await journaled_calls(store, run_id)
    requests_before = len(server.requests)
    await wait_for_lease_to_expire(store, run_id)
    result = await RunStateStore(crashy.make_agent(server.base_url), run_id, store=store).recover()
    expected_requests, expected_items, expected_output = baseline
    assert result.final_output == expected_output
    assert without_ids(await Session(run_id, store=store).get_items()) == expected_items
    made = bodies(server.requests)
    assert len(made) == len(expected_requests) + repeated, (requests_before, len(made))
    assert made[:requests_before - repeated] + made[requests_before:] == expected_requests
    await check_tools_and_end(store, ledger, run_id, before, journaled, expected_output)


async def check_tools_and_end(
    store: Store, ledger: Path, run_id: str, before: list[str], journaled: set[str], output: Any, *, no_key: str = "None"
) -> None:
    """After crashy's run was recovered: each tool whose output was journaled (`journaled`, by
    call id) ran once in all, each other tool once more than `before` the recovery; a call run
    again had the same idempotency key as the first time, and no two calls share one (`no_key`
    is how a tool run outside a durable run writes its missing key); the run is finished with
    `output`."""
    after = crashy.executions(ledger)
    for tool, call_id in crashy.CALL_IDS.items():
        ran_before = sum(line.startswith(tool) for line in before)
        ran_after = sum(line.startswith(tool) for line in after)
        if call_id in journaled:
            assert (ran_before, ran_after) == (1, 1), f"{tool}'s journaled output was not replayed"
        else:
            assert ran_after == ran_before + 1, f"{tool} ran {ran_before} times before the crash and {ran_after} after"
    keys = crashy.call_keys(ledger)
    assert all(len(tool_keys) == 1 for tool_keys in keys.values()), keys
    assert len({key for tool_keys in keys.values() for key in tool_keys} - {no_key}) == 4, keys
    row = await store.fetchrow("SELECT status, final_output FROM run_states WHERE run_id = $1 AND active", run_id)
    assert row is not None and (row["status"], row["final_output"]) == ("finished", output)


@pytest.mark.parametrize("stream", [False, True], ids=["run", "stream"])
@pytest.mark.parametrize("crash_at", CRASH_POINTS)
async def test_a_run_killed_at_a_step_boundary_recovers_from_its_journal(
    named_store: tuple[str, Store], ledger: Path, crash_at: str, stream: bool
) -> None:
    name, store = named_store
    baseline = await uninterrupted(store, ledger)
    run_id = f"crash-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([crashy.answer] * 10) as server:
        killed(child("stream" if stream else "start", name, run_id, server, CRASH_AT=crash_at))
        await check_recovery(store, ledger, server, run_id, baseline)


async def test_a_run_killed_in_the_middle_of_a_streamed_response_recovers(named_store: tuple[str, Store], ledger: Path) -> None:
    name, store = named_store
    baseline = await uninterrupted(store, ledger)
    run_id = f"crash-{uuid.uuid4().hex[:8]}"
    doomed: list[subprocess.Popen[str]] = []
    with FakeModelServer([crashy.answer_cutting_the_third_stream(doomed)] * 10) as server:
        doomed.append(child("stream", name, run_id, server))
        killed(doomed[0])
        assert len(server.requests) == 3
        await check_recovery(store, ledger, server, run_id, baseline, repeated=1)


async def test_a_run_killed_after_an_approval_recovers_the_segment_it_resumed(named_store: tuple[str, Store], ledger: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run pauses for step_b's approval (its first segment ends there); resumed, it is
    killed after pair_c; the recovery replays the resumed segment's journal (step_b's output
    among it) and leaves the first segment as it was."""
    name, store = named_store
    baseline = await uninterrupted(store, ledger)
    monkeypatch.setenv("CRASHY_APPROVE_B", "1")
    run_id = f"crash-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([crashy.answer] * 10) as server:
        agent = crashy.make_agent(server.base_url)
        paused = await run_agent(agent, "go", Session(run_id, store=store), run_store=RunStateStore(agent, run_id, store=store))
        assert [item.raw_item.call_id for item in paused.interruptions] == ["b2"]
        killed(child("resume", name, run_id, server, CRASH_AT="tool_end:pair_c", CRASHY_APPROVE_B="1"))
        assert "b2" in await journaled_calls(store, run_id)
        await check_recovery(store, ledger, server, run_id, baseline)


async def seeded_branch(session_id: str, store: Store) -> AdvancedSession:
    """An AdvancedSession with two turns on "main", and the branch "alt" holding the first."""
    session = AdvancedSession(session_id, store=store)
    await session.add_items([
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "one"},
        {"role": "user", "content": "second"}, {"role": "assistant", "content": "two"},
    ])
    await session.create_branch_from_turn(2, "alt")
    return session


async def branches(session: AdvancedSession) -> dict[str, Any]:
    """Each branch's items and turn structure, ids left out."""
    return {
        branch: (without_ids(await session.get_items(branch_id=branch)), await session.get_conversation_by_turns(branch))
        for branch in ("main", "alt")
    }


async def test_a_run_on_an_advanced_session_branch_recovers_its_turns(named_store: tuple[str, Store], ledger: Path) -> None:
    """An AdvancedSession's writes are journaled too: recovered (in the session and on the
    branch its journal names), the run leaves every branch's items and turns as an
    uninterrupted run does."""
    name, store = named_store
    with FakeModelServer([crashy.answer] * 10) as server:
        baseline = await seeded_branch(f"baseline-{uuid.uuid4().hex[:8]}", store)
        await run_agent(crashy.make_agent(server.base_url), "go", baseline)
    expected = await branches(baseline)
    ledger.unlink()
    run_id = f"crash-{uuid.uuid4().hex[:8]}"
    await seeded_branch(run_id, store)
    with FakeModelServer([crashy.answer] * 10) as server:
        killed(child("start", name, run_id, server, CRASH_AT="tool_end:step_b", CRASHY_BRANCH="alt"))
        assert await RunJournal.session_of(store, await store.fetchval(
            "SELECT id FROM run_states WHERE run_id = $1 AND active", run_id)) == (run_id, "alt")
        await wait_for_lease_to_expire(store, run_id)
        result = await RunStateStore(crashy.make_agent(server.base_url), run_id, store=store).recover()
        assert result.final_output == "done" and len(server.requests) == 4
    assert await branches(AdvancedSession(run_id, store=store)) == expected
    assert sorted(crashy.executions(ledger)) == ["pair_c 3", "pair_d 4", "step_a 1", "step_b 2"]


async def test_a_run_killed_after_a_handoff_recovers_with_the_agent_it_handed_off_to(
    named_store: tuple[str, Store], ledger: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, store = named_store
    monkeypatch.setenv("CRASHY_TRIAGE", "1")
    baseline = await uninterrupted(store, ledger)
    run_id = f"crash-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([crashy.answer] * 12) as server:
        killed(child("start", name, run_id, server, CRASH_AT="tool_end:step_b", CRASHY_TRIAGE="1"))
        await check_recovery(store, ledger, server, run_id, baseline)
        assert [request.body["instructions"] for request in server.requests].count("route") == 1


async def test_two_workers_recover_one_dead_run_once(namespaced_store: tuple[str, str, Store], ledger: Path) -> None:
    name, namespace, store = namespaced_store  # a worker takes every dead run it finds: ours only
    baseline = await uninterrupted(store, ledger)
    run_id = f"crash-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([crashy.answer] * 10) as server:
        killed(child("start", name, run_id, server, CRASH_AT="tool_end:step_b", TIMESTEP_NAMESPACE=namespace))
        await wait_for_lease_to_expire(store, run_id)
        workers = [child("worker", name, run_id, server, TIMESTEP_NAMESPACE=namespace) for _ in range(2)]
        taken = []
        for process in workers:
            out, err = process.communicate(timeout=300)
            assert process.returncode == 0, err
            taken.append(json.loads(out.strip().splitlines()[-1])["taken"])
        assert sorted(taken) == [0, 1]
        assert sorted(crashy.executions(ledger)) == ["pair_c 3", "pair_d 4", "step_a 1", "step_b 2"]
        assert len(server.requests) == len(baseline[0])
        with pytest.raises(RunNotResumable):  # finished: nothing to recover
            await RunStateStore(crashy.make_agent(server.base_url), run_id, store=store).recover()
    assert without_ids(await Session(run_id, store=store).get_items()) == baseline[1]


async def test_a_worker_killed_inside_a_tool_is_recovered_by_another(
    namespaced_store: tuple[str, str, Store], ledger: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run paused for step_b, approved through the store; a worker takes it and dies inside
    pair_c; another worker finishes it: pair_c runs again (it had no journaled output), no other
    tool does, and the run ends as an uninterrupted one."""
    name, namespace, store = namespaced_store  # a worker takes every dead run it finds: ours only
    baseline = await uninterrupted(store, ledger)
    monkeypatch.setenv("CRASHY_APPROVE_B", "1")
    run_id = f"crash-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([crashy.answer] * 12) as server:
        agent = crashy.make_agent(server.base_url)
        await run_agent(agent, "go", Session(run_id, store=store), run_store=RunStateStore(agent, run_id, store=store))
        await RunStateStore.decide(run_id, approve=True, store=store)
        env = {"TIMESTEP_NAMESPACE": namespace, "CRASHY_APPROVE_B": "1"}
        killed(child("worker", name, run_id, server, CRASH_AT="tool_body:pair_c", **env))
        before, journaled = crashy.executions(ledger), await journaled_calls(store, run_id)
        assert {"a1", "b2"} <= journaled and "c3" not in journaled
        await wait_for_lease_to_expire(store, run_id)
        out, err = child("worker", name, run_id, server, **env).communicate(timeout=300)
        assert json.loads(out.strip().splitlines()[-1]) == {"taken": 1}, err
        assert len(server.requests) == len(baseline[0])
    again = ["pair_c 3"] + ([] if "d4" in journaled else ["pair_d 4"])  # pair_d ran beside it, journaled or not
    assert sorted(crashy.executions(ledger)) == sorted(before + again)
    assert len(crashy.call_keys(ledger)["pair_c"]) == 1  # the same key both times
    assert without_ids(await Session(run_id, store=store).get_items()) == baseline[1]
    assert (await RunStateStore.find_run(run_id, store)).status == "finished"


async def steps_of(store: Store, run_id: str) -> int:
    return int(await store.fetchval("SELECT count(*) FROM run_steps WHERE run_id = $1", run_id))


async def test_prune_deletes_the_journals_no_run_will_replay(namespaced_store: tuple[str, str, Store], ledger: Path) -> None:
    name, namespace, store = namespaced_store  # prune deletes every old journal it finds: ours only
    with FakeModelServer([crashy.answer] * 10 + [crashy.answer] * 2) as server:
        agent = crashy.make_agent(server.base_url)
        finished, failed = f"prune-{uuid.uuid4().hex[:8]}", f"prune-{uuid.uuid4().hex[:8]}"
        await run_agent(agent, "go", Session(finished, store=store), run_store=RunStateStore(agent, finished, store=store))
        # A run that fails after its first turn (max_turns): its journal is what a retry replays.
        with pytest.raises(Exception):
            await run_agent(agent, "go", Session(failed, store=store), run_store=RunStateStore(agent, failed, store=store), max_turns=1)
    assert (await steps_of(store, finished), await steps_of(store, failed)) == (13, 4)
    assert await RunStateStore.prune_journals(dt.timedelta(days=7), store) == 0  # nothing that old
    assert (await steps_of(store, finished), await steps_of(store, failed)) == (13, 4)
    done = subprocess.run(
        [sys.executable, "-m", "timestep", "runs", "prune", "--older-than", "0s", "--namespace", namespace,
         *(["--uri", name] if name.startswith("postgresql") else ["--pglite-path", name])],
        capture_output=True, text=True, timeout=300, env=child_env(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("deleted ") and "journal step" in done.stdout
    assert (await steps_of(store, finished), await steps_of(store, failed)) == (0, 4)
    with pytest.raises(ValueError, match="older_than"):
        await RunStateStore.prune_journals(-dt.timedelta(seconds=1), store)


def test_prune_refuses_an_age_it_cannot_read() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "timestep", "runs", "prune", "--uri", "memory://", "--older-than", "7 days"],
        capture_output=True, text=True, timeout=300, env=child_env(),
    )
    assert done.returncode == 2
    assert "'7 days' is not a duration: give a number and a unit, such as 90s, 30m, 12h, 7d or 2w" in done.stderr


def test_tool_call_key_is_none_outside_a_durable_run() -> None:
    assert tool_call_key() is None


async def as_if_died(store: Store, run_id: str) -> None:
    """Put a finished run back as its process would have left it had it died just before the
    end: running, under a lease that has expired, every step of it in its journal."""
    await store.execute(
        "UPDATE run_states SET status = 'running', final_output = NULL, lease_owner = 'died', "
        "lease_expires_at = now() - interval '1 second' WHERE run_id = $1 AND active", run_id,
    )


class Weather(BaseModel):
    city: str
    degrees: int


def scripted(request: RecordedRequest) -> Reply:
    """The model of the tests below, by the agent asking (its instructions)."""
    instructions = request.body.get("instructions")
    outputs = [item for item in request.body.get("input", []) if item.get("type") == "function_call_output"]
    if instructions == "guard":
        return text("fine")
    if instructions == "helper":
        return text("helped") if outputs else call("inner", {})
    tool = request.body["tools"][0]["name"]
    return text("done") if outputs else call(tool, {"weather": {"city": "Paris"}, "ask_helper": {"input": "help"}}[tool])


async def test_a_tool_with_a_declared_output_type_replays_its_output(named_store: tuple[str, Store]) -> None:
    _, store = named_store
    ran: list[str] = []

    @function_tool(output_type=Weather)
    def weather(city: str) -> Weather:
        """The weather."""
        ran.append(city)
        return Weather(city=city, degrees=20)

    run_id = f"typed-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([scripted] * 4) as server:
        agent = Agent(name="typed", instructions="main", model=server.responses_model(), tools=[weather])
        runs = RunStateStore(agent, run_id, store=store)
        first = await run_agent(agent, "weather?", Session(run_id, store=store), run_store=runs)
        await as_if_died(store, run_id)
        recovered = await runs.recover()  # the SDK checks the replayed output against Weather
        outputs = [item["output"] for item in server.requests[1].body["input"] if item.get("type") == "function_call_output"]
    assert first.final_output == recovered.final_output == "done"
    assert outputs == ['{"city":"Paris","degrees":20}']
    assert ran == ["Paris"]
    items = await Session(run_id, store=store).get_items()
    assert [item["output"] for item in items if item.get("type") == "function_call_output"] == outputs


async def test_runs_begun_inside_a_durable_run_are_not_its_steps(named_store: tuple[str, Store]) -> None:
    """A guardrail's run (beside the first model call) and an agent used as a tool run their own
    model calls: the durable run journals neither, and replays only its own; a tool inside the
    agent used as a tool has no call key of the outer run's."""
    _, store = named_store
    keys: list[str | None] = []

    @function_tool
    def inner() -> str:
        """Inner work."""
        keys.append(tool_call_key())
        return "inner done"

    with FakeModelServer([scripted] * 12) as server:
        guard = Agent(name="guard", instructions="guard", model=server.responses_model())
        helper = Agent(name="helper", instructions="helper", model=server.responses_model(), tools=[inner])

        @input_guardrail
        async def checked(context: Any, agent: Any, input: Any) -> GuardrailFunctionOutput:
            verdict = await Runner.run(guard, "is this fine?")
            return GuardrailFunctionOutput(output_info=verdict.final_output, tripwire_triggered=False)

        agent = Agent(
            name="main", instructions="main", model=server.responses_model(), input_guardrails=[checked],
            tools=[helper.as_tool(tool_name="ask_helper", tool_description="Ask the helper.")],
        )
        run_id = f"nested-{uuid.uuid4().hex[:8]}"
        runs = RunStateStore(agent, run_id, store=store)
        first = await run_agent(agent, "go", Session(run_id, store=store), run_store=runs)
        kinds = [row["kind"] for row in await store.fetch("SELECT kind FROM run_steps WHERE run_id = $1 AND kind <> 'session' ORDER BY seq", run_id)]
        assert kinds == ["model", "tool", "model"]  # the main agent's two responses and its one tool call
        await as_if_died(store, run_id)
        main_requests = sum(1 for request in server.requests if request.body.get("instructions") == "main")
        recovered = await runs.recover()
        assert sum(1 for request in server.requests if request.body.get("instructions") == "main") == main_requests
    assert first.final_output == recovered.final_output == "done"
    assert keys == [None]  # the helper's tool ran once (its call was replayed), keyless


async def test_a_run_is_recovered_in_the_session_it_wrote_to(named_store: tuple[str, Store], ledger: Path) -> None:
    _, store = named_store
    conversation = f"user-{uuid.uuid4().hex[:8]}"
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([crashy.answer] * 10) as server:
        agent = crashy.make_agent(server.base_url)
        runs = RunStateStore(agent, run_id, store=store)
        await run_agent(agent, "go", Session(conversation, store=store), run_store=runs)
        written = await Session(conversation, store=store).get_items()
        await as_if_died(store, run_id)
        with pytest.raises(InvalidJournal, match=f"session {conversation!r}"):  # another session: refused, nothing undone
            await runs.recover(Session(run_id, store=store))
        assert await Session(conversation, store=store).get_items() == written
        await as_if_died(store, run_id)
        recovered = await runs.recover()  # the session the journal names
    assert recovered.final_output == "done"
    assert await Session(conversation, store=store).get_items() == written
    assert await Session(run_id, store=store).get_items() == []


async def test_a_retry_after_a_failure_asks_the_model_again_for_the_response_it_failed_on(named_store: tuple[str, Store]) -> None:
    _, store = named_store
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([call("no_such_tool", {}), text("done")]) as server:
        agent = Agent(name="main", instructions="main", model=server.responses_model())
        runs = RunStateStore(agent, run_id, store=store)
        with pytest.raises(ModelBehaviorError, match="no_such_tool"):
            await run_agent(agent, "go", Session(run_id, store=store), run_store=runs)
        assert (await RunStateStore.find_run(run_id, store)).status == "failed"
        retried = await runs.recover()
        assert len(server.requests) == 2
    assert retried.final_output == "done"
    kinds = [row["kind"] for row in await store.fetch("SELECT kind FROM run_steps WHERE run_id = $1 AND kind = 'model'", run_id)]
    assert kinds == ["model"]  # the failed-on response was forgotten, the new one journaled


async def test_an_approval_for_every_call_of_a_tool_survives_a_recovery(named_store: tuple[str, Store]) -> None:
    """Approved with always_approve in the resuming process: the tool's next call runs without a
    pause; recovered, the run replays both calls and neither pauses nor runs again."""
    _, store = named_store
    paid: list[int] = []

    @function_tool(needs_approval=True)
    def pay(n: int) -> str:
        """Pay."""
        paid.append(n)
        return f"paid {n}"

    def payer(request: RecordedRequest) -> Reply:
        outputs = [item for item in request.body.get("input", []) if item.get("type") == "function_call_output"]
        return text("done") if len(outputs) == 2 else call("pay", {"n": len(outputs) + 1}, call_id=f"p{len(outputs) + 1}")

    run_id = f"run-{uuid.uuid4().hex[:8]}"
    with FakeModelServer([payer] * 8) as server:
        agent = Agent(name="payer", instructions="pay", model=server.responses_model(), tools=[pay])
        runs = RunStateStore(agent, run_id, store=store)
        paused = await run_agent(agent, "pay twice", Session(run_id, store=store), run_store=runs)
        assert [item.raw_item.call_id for item in paused.interruptions] == ["p1"]
        state = await runs.load()
        state.approve(state.get_interruptions()[0], always_approve=True)
        finished = await run_agent(agent, state, Session(run_id, store=store), run_store=runs)
        assert (finished.final_output, paid) == ("done", [1, 2])
        await as_if_died(store, run_id)
        recovered = await runs.recover()
    assert (recovered.final_output, recovered.interruptions, paid) == ("done", [], [1, 2])


async def test_a_run_taken_from_its_process_journals_nothing_more(named_store: tuple[str, Store]) -> None:
    """Another process claims the run while a tool runs (here: its lease is given to another
    owner): the tool's output is not journaled, the turn's items are not written, and the run
    stops with RunNotResumable ("lost"), leaving the row to the new owner."""
    _, store = named_store
    run_id = f"run-{uuid.uuid4().hex[:8]}"

    @function_tool
    async def slow() -> str:
        """Work while the run is taken."""
        await store.execute("UPDATE run_states SET lease_owner = 'thief' WHERE run_id = $1 AND active", run_id)
        return "done slowly"

    with FakeModelServer([call("slow", {}), text("done")]) as server:
        agent = Agent(name="main", instructions="main", model=server.responses_model(), tools=[slow])
        session = Session(run_id, store=store)
        with pytest.raises(RunNotResumable) as lost:
            await run_agent(agent, "go", session, run_store=RunStateStore(agent, run_id, store=store))
        assert len(server.requests) == 1
    assert lost.value.reason == "lost"
    steps = await store.fetch("SELECT kind FROM run_steps WHERE run_id = $1 ORDER BY seq", run_id)
    assert [row["kind"] for row in steps] == ["session", "model"]  # the input, the first response; no tool output
    assert [item.get("role") for item in await session.get_items()] == ["user"]
    row = await store.fetchrow("SELECT status, lease_owner FROM run_states WHERE run_id = $1 AND active", run_id)
    assert row is not None and (row["status"], row["lease_owner"]) == ("running", "thief")


@pytest.mark.parametrize("session_class", [Session, AdvancedSession])
async def test_a_run_taken_before_its_turn_is_written_leaves_the_session_untouched(
    named_store: tuple[str, Store], session_class: type[Session]
) -> None:
    _, store = named_store
    run_id = f"run-{uuid.uuid4().hex[:8]}"

    class Thief(RunHooks[Any]):
        async def on_tool_end(self, context: Any, agent: Any, tool: Any, result: Any) -> None:
            await store.execute("UPDATE run_states SET lease_owner = 'thief' WHERE run_id = $1 AND active", run_id)

    @function_tool
    def quick() -> str:
        """Quick work."""
        return "quick"

    with FakeModelServer([call("quick", {}), text("done")]) as server:
        agent = Agent(name="main", instructions="main", model=server.responses_model(), tools=[quick])
        session = session_class(run_id, store=store)
        with pytest.raises(RunNotResumable, match="taken from this process"):
            await run_agent(agent, "go", session, run_store=RunStateStore(agent, run_id, store=store), hooks=Thief())
    steps = await store.fetch("SELECT kind FROM run_steps WHERE run_id = $1 ORDER BY seq", run_id)
    assert [row["kind"] for row in steps] == ["session", "model", "tool"]  # the turn's write: refused
    assert [item.get("role") for item in await session.get_items()] == ["user"]
    touched = await store.fetchval(
        "SELECT s.updated_at > (SELECT max(m.created_at) FROM agent_messages m WHERE m.session_id = $1) "
        "FROM agent_sessions s WHERE s.session_id = $1", run_id,
    )
    assert touched is False  # the refused write did not move the session's updated_at either
    structure = await store.fetchval("SELECT count(*) FROM message_structure WHERE session_id = $1", run_id)
    assert structure == (1 if session_class is AdvancedSession else 0)  # the input's row only


async def test_a_worker_with_a_journal_retention_prunes_as_it_goes(tmp_path: Path) -> None:
    async with await open_store(pglite_path=tmp_path / "db") as store:
        with FakeModelServer([call("quick", {}), text("done")]) as server:

            @function_tool
            def quick() -> str:
                """Quick work."""
                return "quick"

            agent = Agent(name="main", instructions="main", model=server.responses_model(), tools=[quick])
            await run_agent(agent, "go", Session("finished", store=store), run_store=RunStateStore(agent, "finished", store=store))
        assert await steps_of(store, "finished") == 6
        assert await Worker(agent, store=store, journal_retention=dt.timedelta(days=7)).run_once() == 0
        assert await steps_of(store, "finished") == 6  # younger than the retention
        assert await Worker(agent, store=store, journal_retention=dt.timedelta(0)).run_once() == 0
        assert await steps_of(store, "finished") == 0
    with pytest.raises(ValueError, match="journal_retention"):
        Worker(agent, journal_retention=-dt.timedelta(seconds=1))


async def test_a_streamed_run_cancelled_before_its_end_is_recorded_failed_and_recovers(named_store: tuple[str, Store]) -> None:
    """RunResultStreaming.cancel() stops a durable streamed run: consume_result records it
    failed (it did not finish), with its journal, and a recovery finishes it."""
    _, store = named_store
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    ran: list[int] = []

    @function_tool
    def step(n: int) -> str:
        """A step."""
        ran.append(n)
        return f"did {n}"

    with FakeModelServer([call("step", {"n": 1}, call_id="s1"), text("done")] * 2) as server:
        agent = Agent(name="stepper", instructions="step", model=server.responses_model(), tools=[step])
        runs = RunStateStore(agent, run_id, store=store)
        streamed = await run_agent(agent, "go", Session(run_id, store=store), stream=True, run_store=runs)
        async for _ in streamed.stream_events():
            streamed.cancel()
            break
        await consume_result(streamed)
        row = await store.fetchrow("SELECT status, error FROM run_states WHERE run_id = $1 AND active", run_id)
        assert row is not None and (row["status"], row["error"]) == ("failed", "RunCancelled: the run was cancelled before it ended")
        recovered = await runs.recover()
    assert (recovered.final_output, ran) == ("done", [1])


async def test_each_step_is_on_stable_storage_before_the_run_goes_on(tmp_path: Path) -> None:
    """A journaled step is synced before the run acts on it: the response asking for a tool
    before the tool runs (a recovery must not ask the model again and act twice on two
    answers), and the last response before the run's hooks see it.

    Seen in PostgreSQL's own positions on a database of the test's own (nothing else writes
    to it): the WAL flushed (`pg_current_wal_flush_lsn`) against the WAL written."""
    async with await open_store(pglite_path=tmp_path / "db") as store:
        unflushed = "SELECT pg_current_wal_flush_lsn() < pg_current_wal_insert_lsn()"
        seen: dict[str, bool] = {}

        @function_tool
        async def pay() -> str:
            """Pay."""
            seen["tool"] = await store.fetchval(unflushed)
            return "paid"

        class Probe(RunHooks[Any]):
            async def on_agent_end(self, context: Any, agent: Any, output: Any) -> None:
                seen["end"] = await store.fetchval(unflushed)

        with FakeModelServer([call("pay", {}), text("done")]) as server:
            agent = Agent(name="main", instructions="main", model=server.responses_model(), tools=[pay])
            runs = RunStateStore(agent, "synced", store=store)
            result = await run_agent(agent, "go", run_store=runs, hooks=Probe())
        assert result.final_output == "done"
        assert seen == {"tool": False, "end": False}
        assert await store.fetchval("SELECT count(*) FROM run_steps WHERE run_id = 'synced' AND kind = 'model'") == 2
