"""Durable runs: pause, save, exit, load in another process, approve or reject, resume."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

import banker
from conftest import child_env, require_postgres
from timestep import open_store
from timestep.errors import DatabaseError, InvalidRunState, RunStateNotFound
from timestep.run_state import RunStateStore
from timestep.runner import consume_result, run_agent
from timestep.session import Session
from timestep.store import Store
from timestep.testing import FakeModelServer, call, calls, text

pytestmark = pytest.mark.anyio

RESUME_IN_CHILD = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[4])
import banker
from timestep import open_store
from timestep.run_state import RunStateStore
from timestep.runner import consume_result, run_agent
from timestep.session import Session

async def main():
    target, run_id, decisions = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    uri, path = (target, None) if target.startswith("postgresql") else (None, target)
    async with await open_store(uri, pglite_path=path) as store:
        agent = banker.make_agent()
        runs = RunStateStore(agent, run_id, store=store)
        state = await runs.load()
        for item in state.get_interruptions():
            decision = decisions[item.raw_item.call_id]
            if decision == "approve":
                state.approve(item)
            else:
                state.reject(item, rejection_message=decision)
        result = await consume_result(await run_agent(agent, state, Session(run_id, store=store), stream=decisions.get("stream", False)))
        if result.interruptions:
            await runs.save(result.to_state())
        print(json.dumps({"final": result.final_output, "executed": banker.executed, "pending": len(result.interruptions)}))

asyncio.run(main())
"""


@pytest.fixture(params=["pglite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return require_postgres() if request.param == "postgres" else str(tmp_path / "db")


async def open_target(target: str) -> Store:
    return await open_store(target) if target.startswith("postgresql") else await open_store(pglite_path=target)


def resume_in_child(target: str, run_id: str, decisions: dict[str, Any], server: FakeModelServer) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", RESUME_IN_CHILD, target, run_id, json.dumps(decisions), str(Path(banker.__file__).parent)],
        capture_output=True, text=True, timeout=300, env=child_env(FAKE_MODEL_URL=server.base_url),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


async def pause(target: str, server: FakeModelServer, prompt: str, stream: bool) -> tuple[str, list[Any]]:
    """Run to the first approval in this process, save, and close the store (the process 'exits')."""
    store = await open_target(target)
    try:
        agent = banker.make_agent(server.base_url)
        session = Session(store=store)
        result = await consume_result(await run_agent(agent, prompt, session, stream=stream))
        assert result.interruptions
        await RunStateStore(agent, session.session_id, store=store).save(result.to_state())
        return session.session_id, [i.raw_item.call_id for i in result.interruptions]
    finally:
        await store.aclose()


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streaming"])
async def test_pause_save_exit_resume_in_another_process(target: str, stream: bool) -> None:
    with FakeModelServer([call("wire_money", {"amount": 5}), text("Sent 5.")]) as server:
        run_id, call_ids = await pause(target, server, "send 5", stream)
        assert call_ids == ["call_1_0"]
        outcome = resume_in_child(target, run_id, {"call_1_0": "approve", "stream": stream}, server)
    assert outcome == {"final": "Sent 5.", "executed": ["wire_money 5.0"], "pending": 0}
    assert "sent 5" in server.requests[1].text()


async def test_two_parallel_approvals_one_rejected_with_a_message(target: str) -> None:
    script = [calls(("wire_money", {"amount": 5}), ("close_account", {"account": "main"})), text("Sent 5; the account stays open.")]
    with FakeModelServer(script) as server:
        run_id, call_ids = await pause(target, server, "send 5 and close main", False)
        assert call_ids == ["call_1_0", "call_1_1"]
        outcome = resume_in_child(target, run_id, {"call_1_0": "approve", "call_1_1": "Refused: the account has a balance."}, server)
    assert outcome["executed"] == ["wire_money 5.0"]
    resumed = server.requests[1].text()
    assert "sent 5" in resumed and "Refused: the account has a balance." in resumed


async def test_a_second_interruption_is_saved_and_resumed_again(target: str) -> None:
    script = [call("wire_money", {"amount": 5}), call("close_account", {"account": "main"}), text("Done.")]
    with FakeModelServer(script) as server:
        run_id, _ = await pause(target, server, "send 5 then close main", False)
        first = resume_in_child(target, run_id, {"call_1_0": "approve"}, server)
        assert first == {"final": None, "executed": ["wire_money 5.0"], "pending": 1}
        second = resume_in_child(target, run_id, {"call_2_0": "approve"}, server)
    assert second == {"final": "Done.", "executed": ["close_account main"], "pending": 0}
    store = await open_target(target)
    try:
        history = await RunStateStore(banker.make_agent("http://127.0.0.1:9/v1"), run_id, store=store).history()
        assert [(h["status"], h["active"]) for h in history] == [("interrupted", False), ("interrupted", True)]
        assert history[0]["resumed_at"] is not None and history[1]["resumed_at"] is not None
    finally:
        await store.aclose()


async def test_session_after_resume_matches_an_unpaused_run(store: Store) -> None:
    banker.executed.clear()
    script = [call("wire_money", {"amount": 5}), text("Sent 5.")]
    with FakeModelServer(script) as server:
        agent = banker.make_agent(server.base_url)
        paused = Session(store=store)
        result = await run_agent(agent, "send 5", paused)
        runs = RunStateStore(agent, paused.session_id, store=store)
        await runs.save(result.to_state())
        state = await runs.load()
        state.approve(state.get_interruptions()[0])
        await run_agent(agent, state, paused)
    with FakeModelServer(script) as server:
        agent = banker.make_agent(server.base_url)
        straight = Session(store=store)
        result = await run_agent(agent, "send 5", straight)
        state = result.to_state()
        state.approve(state.get_interruptions()[0])
        await run_agent(agent, state, straight)
    assert await paused.get_items() == await straight.get_items()
    assert [i.get("type", "message") for i in await paused.get_items()] == ["message", "function_call", "function_call_output", "message"]


async def test_bad_states_are_refused_and_left_untouched(store: Store) -> None:
    with FakeModelServer([call("wire_money", {"amount": 5})]) as server:
        agent = banker.make_agent(server.base_url)
        session = Session(store=store)
        result = await run_agent(agent, "send 5", session)
        runs = RunStateStore(agent, session.session_id, store=store)
        await runs.save(result.to_state())
    good = await store.fetchval("SELECT state FROM run_states WHERE run_id = $1 AND active", runs.session_id)

    async def refused(document: dict[str, Any], fragment: str, with_agent: Any = agent) -> None:
        await store.execute("UPDATE run_states SET state = $2 WHERE run_id = $1 AND active", runs.session_id, document)
        with pytest.raises(InvalidRunState, match=fragment):
            await RunStateStore(with_agent, runs.session_id, store=store).load()
        row = await store.fetchrow("SELECT state, resumed_at FROM run_states WHERE run_id = $1 AND active", runs.session_id)
        assert row == {"state": document, "resumed_at": None}

    await refused({**good, "$schemaVersion": "9.99"}, "9.99")
    truncated = {k: v for k, v in good.items() if k in ("$schemaVersion", "current_turn")}
    await refused(truncated, "truncated.*missing current_agent")
    from agents import Agent

    await refused(good, "current agent 'banker'.*agent 'teller'", with_agent=Agent(name="teller"))
    await store.execute("UPDATE run_states SET state = $2 WHERE run_id = $1 AND active", runs.session_id, good)
    assert len((await runs.load()).get_interruptions()) == 1


async def test_the_state_is_stored_as_the_sdk_wrote_it(store: Store) -> None:
    """The saved text is the SDK's JSON itself, key order included (a `json` column, not `jsonb`)."""
    from agents.run_context import RunContextWrapper
    from agents.run_state import RunState

    agent = banker.make_agent("http://127.0.0.1:9/v1")
    state = RunState(context=RunContextWrapper(context=None), original_input="héllo 😀", starting_agent=agent, max_turns=3)
    runs = RunStateStore(agent, store=store)
    await runs.save(state)
    text = await store.fetchval("SELECT state::text FROM run_states WHERE run_id = $1 AND active", runs.session_id)
    assert json.loads(text) == state.to_json()
    assert list(json.loads(text)) == list(state.to_json())  # jsonb would sort keys by length
    assert list(json.loads(text)) != sorted(state.to_json(), key=lambda key: (len(key), key))


async def test_states_are_compressed_with_lz4_where_the_server_has_it(store: Store) -> None:
    """Migration 9: lz4 on a server built with it, pglz (the default) elsewhere, e.g. PGlite."""
    from agents.run_context import RunContextWrapper
    from agents.run_state import RunState

    agent = banker.make_agent("http://127.0.0.1:9/v1")
    state = RunState(context=RunContextWrapper(context=None), original_input="a long request " * 500, starting_agent=agent, max_turns=3)
    runs = RunStateStore(agent, store=store)
    await runs.save(state)
    try:
        await store.execute_batch([("SET LOCAL default_toast_compression = lz4", [])])
        expected = "lz4"
    except DatabaseError:
        expected = "pglz"
    compression = await store.fetchrow(
        "SELECT pg_column_compression(state) AS state, pg_column_compression(state_js) AS state_js FROM run_states WHERE run_id = $1",
        runs.session_id,
    )
    assert compression == {"state": expected, "state_js": expected}
    stored = await store.fetchval("SELECT state->>'original_input' FROM run_states WHERE run_id = $1", runs.session_id)
    assert stored == "a long request " * 500


async def test_save_refuses_what_is_not_a_run_state(store: Store) -> None:
    runs = RunStateStore(banker.make_agent("http://127.0.0.1:9/v1"), store=store)
    with pytest.raises(TypeError, match="takes a RunState"):
        await runs.save({"$schemaVersion": "1.21"})  # type: ignore[arg-type]
    with pytest.raises(RunStateNotFound, match="no saved state"):
        await runs.load()
    assert await runs.clear() == 0


def test_two_processes_saving_one_run_at_once(target: str, tmp_path: Path) -> None:
    """Exactly one active state at the end, and every save in the history."""
    saver = textwrap.dedent(
        """
        import asyncio, sys
        sys.path.insert(0, sys.argv[3])
        import banker
        from agents.run_context import RunContextWrapper
        from agents.run_state import RunState
        from timestep import open_store
        from timestep.run_state import RunStateStore

        async def main():
            target, run_id = sys.argv[1], sys.argv[2]
            uri, path = (target, None) if target.startswith("postgresql") else (None, target)
            async with await open_store(uri, pglite_path=path) as store:
                agent = banker.make_agent("http://127.0.0.1:9/v1")
                runs = RunStateStore(agent, run_id, store=store)
                for _ in range(10):
                    await runs.save(RunState(context=RunContextWrapper(context=None), original_input="hi", starting_agent=agent, max_turns=3))
        asyncio.run(main())
        """
    )
    run_id = f"race-{uuid.uuid4()}"
    children = [
        subprocess.Popen([sys.executable, "-c", saver, target, run_id, str(Path(banker.__file__).parent)], stderr=subprocess.PIPE, text=True, env=child_env())
        for _ in range(3)
    ]
    for child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err

    async def check() -> None:
        store = await open_target(target)
        try:
            rows = await store.fetch("SELECT active FROM run_states WHERE run_id = $1", run_id)
            assert len(rows) == 30
            assert sum(row["active"] for row in rows) == 1
        finally:
            await store.aclose()

    asyncio.run(check())


async def test_context_serializer_and_deserializer_pass_through(store: Store) -> None:
    """A run's own context object survives save and load through the SDK's hooks."""
    from dataclasses import dataclass

    @dataclass
    class Account:
        owner: str
        limit: int

    seen: list[Any] = []

    def serialize(value: Any) -> dict[str, Any]:
        seen.append(value)
        return {"owner": value.owner, "limit": value.limit}

    with FakeModelServer([call("wire_money", {"amount": 5}), text("Sent."), text("Sent.")]) as server:
        agent = banker.make_agent(server.base_url)
        result = await run_agent(agent, "send 5", None, context=Account("ada", 100))
        runs = RunStateStore(agent, store=store, context_serializer=serialize, context_deserializer=lambda data: Account(**data))
        await runs.save(result.to_state())
        assert seen == [Account("ada", 100)]

        async def resumed_context(loader: RunStateStore) -> Any:
            state = await loader.load()
            state.approve(state.get_interruptions()[0])
            return (await run_agent(agent, state, None)).context_wrapper.context

        assert await resumed_context(runs) == Account("ada", 100)
        override = RunStateStore(agent, runs.session_id, store=store, context_override=Account("bob", 1))
        assert await resumed_context(override) == Account("bob", 1)
