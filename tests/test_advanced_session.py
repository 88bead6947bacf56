"""AdvancedSession: the SDK's AdvancedSQLiteSession, on PGlite and PostgreSQL.

The conformance test plays one scenario (real Runner runs through the fake model server, then
every branch, turn and usage method, errors included) against AdvancedSQLiteSession on a file
and against AdvancedSession on each backend, and requires identical results.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner, function_tool
from agents.extensions.memory import AdvancedSQLiteSession
from agents.models.openai_responses import OpenAIResponsesModel

from timestep import AdvancedSession
from timestep.errors import InvalidBranch
from timestep.store import Store
from timestep.testing import FakeModelServer, call, text

pytestmark = pytest.mark.anyio


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def weather_agent(server: FakeModelServer) -> Agent[Any]:
    return Agent(name="weather", instructions="help", model=OpenAIResponsesModel("gpt-4.1", server.client()), tools=[get_weather])


SCRIPT = [
    call("get_weather", {"city": "Paris"}, call_id="c1"), text("Sunny in Paris.", input_tokens=11, output_tokens=3),
    call("get_weather", {"city": "Tokyo"}, call_id="c2"), text("Sunny in Tokyo.", input_tokens=13, output_tokens=4),
    text("You're welcome.", input_tokens=17, output_tokens=2),
    call("get_weather", {"city": "Rome"}, call_id="c3"), text("Sunny in Rome.", input_tokens=19, output_tokens=5),
]


async def scenario(session: Any) -> list[tuple[str, Any]]:
    """Everything the session answers along one conversation, branches and errors included."""
    seen: list[tuple[str, Any]] = []

    async def note(label: str, operation: Any) -> Any:
        try:
            value = await operation
        except ValueError as exc:
            value = f"ValueError: {exc}"
        seen.append((label, _comparable(value)))
        return value

    with FakeModelServer(SCRIPT) as server:
        agent = weather_agent(server)

        async def turn(prompt: str) -> None:
            result = await Runner.run(agent, prompt, session=session)
            await session.store_run_usage(result)

        await turn("What's the weather in Paris?")
        await turn("And in Tokyo?")
        await turn("Thanks!")
        await note("items", session.get_items())
        await note("items limit 3", session.get_items(limit=3))
        await note("turns", session.get_conversation_turns())
        await note("find tokyo", session.find_turns_by_content("tokyo"))
        await note("find nothing", session.find_turns_by_content("zzz"))
        await note("by turns", session.get_conversation_by_turns())
        await note("tool usage", session.get_tool_usage())
        await note("session usage", session.get_session_usage())
        await note("turn usage", session.get_turn_usage())
        await note("turn 2 usage", session.get_turn_usage(2))
        await note("turn 9 usage", session.get_turn_usage(9))
        await note("branches", session.list_branches())

        await note("branch from turn 2", session.create_branch_from_turn(2, "what-if"))
        await note("branch items", session.get_items())
        await turn("And in Rome?")
        await note("branch items after a run", session.get_items())
        await note("main items", session.get_items(branch_id="main"))
        await note("branch turns", session.get_conversation_turns())
        await note("branch turn usage", session.get_turn_usage())
        await note("branch tool usage", session.get_tool_usage())
        await note("usage of all branches", session.get_session_usage())
        await note("usage of main", session.get_session_usage(branch_id="main"))
        await note("usage of what-if", session.get_session_usage(branch_id="what-if"))
        await note("branches with what-if", session.list_branches())

        await note("no such turn", session.create_branch_from_turn(99))
        await note("name used", session.create_branch_from_turn(1, "what-if"))
        await note("blank name", session.create_branch_from_turn(1, "  "))
        await note("no such branch", session.switch_to_branch("nope"))
        await note("delete main", session.delete_branch("main"))
        await note("delete current", session.delete_branch("what-if"))
        await note("delete unknown", session.delete_branch("nope"))
        await note("no content", session.create_branch_from_content("zzz"))
        await note("branch from content", session.create_branch_from_content("ROME"))
        await note("switch to main", session.switch_to_branch("main"))
        await note("pop on main", session.pop_item())
        await note("main after pop", session.get_items())
        await note("main turn usage after pop", session.get_turn_usage())
        await note("delete what-if", session.delete_branch("what-if"))
        await note("branches after delete", session.list_branches())
        await note("what-if items after delete", session.get_items(branch_id="what-if"))
        await note("usage after delete", session.get_session_usage())
        await note("force-delete current", session.switch_to_branch(await _branch_like(session, "branch_from_turn_2_")))
        await note("force-delete", session.delete_branch(await _branch_like(session, "branch_from_turn_2_"), force=True))
        await note("branches at the end", session.list_branches())

        await note("clear", session.clear_session())
        await note("items after clear", session.get_items())
        await note("branches after clear", session.list_branches())
        await note("usage after clear", session.get_session_usage())
        await note("name used before the clear", session.create_branch_from_turn(1, "what-if"))
    return seen


async def _branch_like(session: Any, prefix: str) -> str:
    return next(b["branch_id"] for b in await session.list_branches() if b["branch_id"].startswith(prefix))


def _comparable(value: Any) -> Any:
    """Without what differs by nature: timestamps, the epoch seconds in generated branch ids,
    and the order of branches created within one second (by creation second, so it depends
    on when each run crossed a second)."""
    if isinstance(value, list) and value and isinstance(value[0], dict) and "branch_id" in value[0]:
        return sorted((_comparable(item) for item in value), key=lambda branch: branch["branch_id"])
    if isinstance(value, dict):
        return {key: _comparable(item) for key, item in value.items() if key not in ("created_at", "timestamp")}
    if isinstance(value, (list, tuple)):
        return type(value)(_comparable(item) for item in value)
    if isinstance(value, str):
        return re.sub(r"branch_from_turn_(\d+)_\d+", r"branch_from_turn_\1_<epoch>", value)
    return value


async def test_matches_advanced_sqlite_session(store: Store, tmp_path: Path) -> None:
    reference = AdvancedSQLiteSession(session_id="conformance", db_path=tmp_path / "sdk.db", create_tables=True)
    try:
        expected = await scenario(reference)
    finally:
        reference.close()
    got = await scenario(AdvancedSession(f"conformance-{uuid.uuid4()}", store=store))
    assert [label for label, _ in got] == [label for label, _ in expected]
    for (label, want), (_, value) in zip(expected, got):
        assert value == want, label
    assert len(got) > 40


def test_branch_errors_are_value_errors() -> None:
    assert issubclass(InvalidBranch, ValueError)
