"""AdvancedSession: the SDK's AdvancedSQLiteSession, on PGlite and PostgreSQL.

The conformance test plays one scenario (real Runner runs through the fake model server, then
every branch, turn and usage method, errors included) against AdvancedSQLiteSession on a file
and against AdvancedSession on each backend, and requires identical results.
"""

from __future__ import annotations

import asyncio
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


@pytest.mark.parametrize("term", ["café", "CAFÉ", "😀", 'say "hi"', "back\\slash", "u00e9", "line\nbreak", "plain"])
async def test_find_turns_by_content_matches_sqlite_beyond_ascii(store: Store, tmp_path: Path, term: str) -> None:
    """Terms the stored JSON text holds escaped (non-ASCII, quotes, backslashes, control
    characters) find the same turns as in AdvancedSQLiteSession."""
    contents = ["un café", "UN CAFÉ 😀", 'they say "hi"', "a back\\slash", "line\nbreak", "plain text", "u00e9 literally"]
    items = [message for content in contents for message in (user(content), assistant("ok"))]
    reference = AdvancedSQLiteSession(session_id="search", db_path=tmp_path / "sdk.db", create_tables=True)
    try:
        await reference.add_items(items)
        expected = await reference.find_turns_by_content(term)
    finally:
        reference.close()
    session = AdvancedSession(f"search-{uuid.uuid4()}", store=store)
    await session.add_items(items)
    assert _comparable(await session.find_turns_by_content(term)) == _comparable(expected)
    assert expected


def test_branch_errors_are_value_errors() -> None:
    assert issubclass(InvalidBranch, ValueError)


def user(content: str) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: str) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


async def snapshot(store: Store, session_id: str) -> list[Any]:
    """Every row the session owns, in every table, for before/after comparisons."""
    rows = []
    for table, order in (
        ("agent_sessions", "session_id"), ("agent_messages", "id"), ("message_structure", "branch_id, sequence_number"),
        ("turn_usage", "id"), ("branch_reservations", "branch_id"),
    ):
        rows.append(await store.fetch(f"SELECT * FROM {table} WHERE session_id = $1 ORDER BY {order}", session_id))
    return rows


async def conversation(store: Store, turns: int = 3) -> AdvancedSession:
    session = AdvancedSession(f"adv-{uuid.uuid4()}", store=store)
    for number in range(1, turns + 1):
        await session.add_items([user(f"question {number}"), assistant(f"answer {number}")])
    return session


async def test_refused_branch_operations_change_nothing(store: Store) -> None:
    session = await conversation(store)
    await session.create_branch_from_turn(2, "taken")
    await session.switch_to_branch("main")
    before = await snapshot(store, session.session_id)
    for operation in (
        session.create_branch_from_turn(2, "taken"),
        session.create_branch_from_turn(7, "new"),
        session.create_branch_from_content("nowhere", "new"),
        session.delete_branch("unknown"),
        session.delete_branch("main"),
        session.switch_to_branch("unknown"),
    ):
        with pytest.raises(InvalidBranch):
            await operation
    assert await snapshot(store, session.session_id) == before
    assert session.current_branch_id == "main"


async def test_concurrent_writers_keep_one_order(store: Store) -> None:
    """Sessions objects on one id, appending at once: every batch stays contiguous and in
    order, sequence numbers are unique, and each user message starts a new turn."""
    session_id = f"adv-{uuid.uuid4()}"
    writers = [AdvancedSession(session_id, store=store) for _ in range(8)]

    async def write(number: int, session: AdvancedSession) -> None:
        for round_ in range(5):
            await session.add_items([user(f"w{number} r{round_}"), assistant(f"w{number} r{round_} a")])

    await asyncio.gather(*(write(number, session) for number, session in enumerate(writers)))
    rows = await store.fetch(
        "SELECT s.sequence_number, s.user_turn_number, m.message_data FROM message_structure s "
        "JOIN agent_messages m ON m.id = s.message_id WHERE s.session_id = $1 ORDER BY s.sequence_number",
        session_id,
    )
    assert [row["sequence_number"] for row in rows] == list(range(1, 81))
    assert [row["user_turn_number"] for row in rows] == [turn for turn in range(1, 41) for _ in (0, 1)]
    for question, answer in zip(rows[::2], rows[1::2]):
        assert answer["message_data"]["content"] == question["message_data"]["content"] + " a"


async def test_concurrent_branch_creation_with_one_name(store: Store) -> None:
    session = await conversation(store)
    rivals = [AdvancedSession(session.session_id, store=store) for _ in range(6)]
    outcomes = await asyncio.gather(*(rival.create_branch_from_turn(3, "only-one") for rival in rivals), return_exceptions=True)
    assert sum(outcome == "only-one" for outcome in outcomes) == 1
    assert all(isinstance(outcome, InvalidBranch) for outcome in outcomes if outcome != "only-one")
    assert await session.get_items(branch_id="only-one") == [user("question 1"), assistant("answer 1"), user("question 2"), assistant("answer 2")]


async def test_pops_and_appends_at_once_lose_nothing(store: Store) -> None:
    session = await conversation(store, turns=10)
    popper, writer = AdvancedSession(session.session_id, store=store), AdvancedSession(session.session_id, store=store)
    popped, _ = await asyncio.gather(
        asyncio.gather(*(popper.pop_item() for _ in range(6))),
        asyncio.gather(*(writer.add_items([user(f"late {n}")]) for n in range(4))),
    )
    remaining = await session.get_items()
    assert len([item for item in popped if item is not None]) == 6
    assert len(remaining) == 20 + 4 - 6
    originals = [user(f"question {n}") for n in range(1, 11)] + [assistant(f"answer {n}") for n in range(1, 11)]
    late = [user(f"late {n}") for n in range(4)]
    everything = [item for item in popped if item is not None] + remaining
    assert sorted(map(str, everything)) == sorted(map(str, originals + late))


async def test_a_branch_shares_messages_until_deleted(store: Store) -> None:
    session = await conversation(store)
    await session.create_branch_from_turn(3, "alt")
    await session.add_items([user("alt question"), assistant("alt answer")])
    messages = await store.fetchval("SELECT count(*) FROM agent_messages WHERE session_id = $1", session.session_id)
    assert messages == 6 + 2  # the four copied rows point at main's messages
    await session.delete_branch("alt", force=True)
    assert session.current_branch_id == "main"
    assert await store.fetchval("SELECT count(*) FROM agent_messages WHERE session_id = $1", session.session_id) == 6
    assert len(await session.get_items()) == 6


async def test_structure_rows_go_with_their_messages(store: Store) -> None:
    """Messages deleted by a plain Session on the same id take their branch rows with them."""
    from timestep.session import Session

    session = await conversation(store)
    await session.create_branch_from_turn(3, "alt")
    plain = Session(session.session_id, store=store)

    def rows() -> Any:
        return store.fetchval("SELECT count(*) FROM message_structure WHERE session_id = $1", session.session_id)

    assert await rows() == 6 + 4
    assert await plain.pop_item() == assistant("answer 3")  # held by main only
    assert await rows() == 5 + 4
    assert [item["content"] for item in await session.get_items(branch_id="main")] == [
        "question 1", "answer 1", "question 2", "answer 2", "question 3",
    ]
    await plain.clear_session()
    assert await rows() == 0
    assert await session.list_branches() == []
