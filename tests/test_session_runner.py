"""Session with the real Runner and the real openai client, against the fake model server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner
from agents.extensions.memory import EncryptedSession
from agents.memory import SessionSettings

from timestep.session import Session
from timestep.store import Store
from timestep.testing import FakeModelServer, RecordedRequest, Reply, text

pytestmark = pytest.mark.anyio


def remembers_name(request: RecordedRequest) -> Reply:
    """Answers with the name if the conversation so far mentions it: the history reached the model."""
    return text("Your name is Alice." if "my name is Alice" in request.text() else "I don't know your name.")


def agent_for(server: FakeModelServer, api: str = "responses") -> Agent[Any]:
    model = server.responses_model() if api == "responses" else server.chat_model()
    return Agent(name="assistant", instructions="Be brief.", model=model)


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
async def test_two_turns_share_history(store: Store, fake_model_server: FakeModelServer, api: str) -> None:
    fake_model_server.add(text("Nice to meet you, Alice."), remembers_name)
    agent, session = agent_for(fake_model_server, api), Session(store=store)
    await Runner.run(agent, "my name is Alice", session=session)
    result = await Runner.run(agent, "what is my name?", session=session)
    assert result.final_output == "Your name is Alice."
    items = await session.get_items()
    assert [i.get("role") for i in items] == ["user", "assistant", "user", "assistant"]
    assert items[0]["content"] == "my name is Alice"


async def test_streamed_runs_keep_history(store: Store, fake_model_server: FakeModelServer) -> None:
    fake_model_server.add(text("Nice to meet you, Alice."), remembers_name)
    agent, session = agent_for(fake_model_server), Session(store=store)
    for prompt in ("my name is Alice", "what is my name?"):
        streamed = Runner.run_streamed(agent, prompt, session=session)
        async for _ in streamed.stream_events():
            pass
    assert streamed.final_output == "Your name is Alice."
    assert all(r.stream for r in fake_model_server.requests)
    assert len(await session.get_items()) == 4


def test_run_sync_with_a_session(store: Store) -> None:
    """Runner.run_sync makes its own event loop, twice: no "attached to a different loop" errors."""
    with FakeModelServer([text("Nice to meet you, Alice."), remembers_name]) as server:
        agent, session = agent_for(server), Session(store=store)
        Runner.run_sync(agent, "my name is Alice", session=session)
        result = Runner.run_sync(agent, "what is my name?", session=session)
    assert result.final_output == "Your name is Alice."
    assert len(asyncio.run(session.get_items())) == 4


async def test_session_settings_limit_bounds_the_history_sent(store: Store, fake_model_server: FakeModelServer) -> None:
    fake_model_server.add(text("one"), text("two"), text("three"))
    agent = agent_for(fake_model_server)
    session = Session(store=store, session_settings=SessionSettings(limit=2))
    for prompt in ("first", "second", "third"):
        await Runner.run(agent, prompt, session=session)
    last_input = fake_model_server.requests[-1].body["input"]
    assert [m.get("content") if isinstance(m.get("content"), str) else m["content"][0]["text"] for m in last_input] == ["second", "two", "third"]
    assert len(await session.get_items(limit=None)) == 2  # the settings' limit applies to reads
    assert len(await Session(session.session_id, store=store).get_items()) == 6


async def test_session_input_callback(store: Store, fake_model_server: FakeModelServer) -> None:
    fake_model_server.add(text("one"), text("two"))
    agent, session = agent_for(fake_model_server), Session(store=store)
    await Runner.run(agent, "first", session=session)

    def only_new_input(history: list[Any], new_input: list[Any]) -> list[Any]:
        return new_input

    await Runner.run(agent, "second", session=session, run_config=RunConfig(session_input_callback=only_new_input))
    assert "first" not in fake_model_server.requests[-1].text()
    assert len(await session.get_items()) == 4


async def test_wrapped_in_encrypted_session(store: Store, fake_model_server: FakeModelServer) -> None:
    fake_model_server.add(text("Nice to meet you, Alice."), remembers_name)
    inner = Session(store=store)
    session = EncryptedSession(session_id=inner.session_id, underlying_session=inner, encryption_key="a" * 43 + "=")
    agent = agent_for(fake_model_server)
    await Runner.run(agent, "my name is Alice", session=session)
    result = await Runner.run(agent, "what is my name?", session=session)
    assert result.final_output == "Your name is Alice."
    stored = await store.fetch("SELECT message_data::text AS raw FROM agent_messages WHERE session_id = $1", inner.session_id)
    assert len(stored) == 4 and not any("Alice" in row["raw"] for row in stored)
