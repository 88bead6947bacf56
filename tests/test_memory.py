"""Agent memory: facts and episodes on both backends, scoped, recalled by full-text search,
exposed to agents as tools, and on the command line."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner
from agents.models.openai_responses import OpenAIResponsesModel

from conftest import child_env
from timestep import open_store
from timestep.errors import InvalidMemory, MemoryNotFound
from timestep.memory import MAX_TEXT, Memory
from timestep.session import Session
from timestep.store import Store
from timestep.store.namespace import drop_namespace
from timestep.testing import FakeModelServer, call, text

pytestmark = pytest.mark.anyio


def fresh_scope() -> str:
    return f"user:{uuid.uuid4().hex[:12]}"


async def test_remember_recall_update_forget(store: Store) -> None:
    memory = Memory(store, scope=fresh_scope())
    colour = await memory.remember("Alice's favourite colour is blue", subject="alice", tags=["preferences"], source_session="s1")
    city = await memory.remember("Alice lives in Lisbon near the river", subject="alice", tags=["home"])
    await memory.remember("The office printer is on the third floor", tags=["office"])
    assert (colour.subject, colour.tags, colour.source_session, colour.expires_at) == ("alice", ["preferences"], "s1", None)

    assert [fact.id for fact in await memory.recall("what is alice's favourite colour?")][:1] == [colour.id]
    assert [fact.id for fact in await memory.recall("lisbon river")] == [city.id]
    both = await memory.recall("alice colour lisbon")
    assert {fact.id for fact in both} == {colour.id, city.id}
    assert all(fact.score is not None and fact.score > 0 for fact in both)
    assert await memory.recall("submarine") == []
    assert [fact.id for fact in await memory.recall("alice", tags=["home"])] == [city.id]
    assert [fact.id for fact in await memory.recall("floor", subject="alice")] == []
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)
    assert await memory.recall("alice", since=later) == []
    assert len(await memory.recall("alice", until=later)) == 2

    updated = await memory.update(colour.id, text="Alice's favourite colour is now green", tags=["preferences", "2026"])
    assert updated.text.endswith("green") and updated.tags == ["preferences", "2026"] and updated.updated_at >= colour.updated_at
    assert [fact.id for fact in await memory.recall("green")] == [colour.id]
    await memory.forget(city.id)
    assert [fact.text for fact in await memory.list(subject="alice")] == ["Alice's favourite colour is now green"]
    with pytest.raises(MemoryNotFound, match=f"no fact {city.id} in memory scope"):
        await memory.forget(city.id)


async def test_expired_facts_are_not_recalled(store: Store) -> None:
    memory = Memory(store, scope=fresh_scope())
    fact = await memory.remember("The door code is 4512 this week", ttl=dt.timedelta(days=7))
    assert fact.expires_at is not None and fact.expires_at > fact.created_at + dt.timedelta(days=6)
    await store.execute("UPDATE memory_facts SET expires_at = now() - interval '1 second' WHERE id = $1", fact.id)
    assert await memory.recall("door code") == []
    assert await memory.list() == []
    with pytest.raises(MemoryNotFound):
        await memory.update(fact.id, text="changed")


async def test_episodes(store: Store) -> None:
    memory = Memory(store, scope=fresh_scope())
    trip = await memory.record_episode("Planned a weekend trip to Porto by train", session_id="s1", run_id="r1", outcome="booked")
    await memory.record_episode("Fixed the broken invoice export", session_id="s2", outcome="fixed")
    assert [(e.id, e.outcome, e.session_id) for e in await memory.recall_episodes("porto train")] == [(trip.id, "booked", "s1")]
    assert [e.summary for e in await memory.list_episodes()] == ["Fixed the broken invoice export", trip.summary]


async def test_scopes_never_leak(store: Store) -> None:
    alice, bob = Memory(store, scope=fresh_scope()), Memory(store, scope=fresh_scope())
    secret = await alice.remember("Alice's bank PIN hint is her cat's name")
    assert await bob.recall("bank pin hint cat") == []
    assert await bob.list() == []
    for attempt in (bob.forget(secret.id), bob.update(secret.id, text="stolen")):
        with pytest.raises(MemoryNotFound):
            await attempt
    assert [fact.text for fact in await alice.list()] == [secret.text]
    remember, recall, forget = bob.as_tools()
    assert "nothing remembered matches" in await _invoke(recall, {"query": "bank pin hint cat"})
    assert "not forgotten" in await _invoke(forget, {"fact_id": secret.id})
    assert [fact.text for fact in await alice.list()] == [secret.text]


async def _invoke(tool: Any, arguments: dict[str, Any]) -> str:
    import json

    from agents.tool_context import ToolContext

    context = ToolContext(context=None, tool_name=tool.name, tool_call_id="t1", tool_arguments=json.dumps(arguments))
    return str(await tool.on_invoke_tool(context, json.dumps(arguments)))


async def test_bad_input_is_refused_and_changes_nothing(store: Store) -> None:
    memory = Memory(store, scope=fresh_scope())
    await memory.remember("kept")
    attempts = [
        (memory.remember(""), "cannot be empty"),
        (memory.remember("   \n"), "cannot be empty"),
        (memory.remember("x" * (MAX_TEXT + 1)), f"limited to {MAX_TEXT:,} characters; this one has {MAX_TEXT + 1:,}"),
        (memory.remember("nul \x00 inside"), "NUL"),
        (memory.remember("ok", tags="one-string"), "list of strings"),
        (memory.remember("ok", tags=[""]), "tags must be"),
        (memory.remember("ok", subject=" "), "subject must be"),
        (memory.remember("ok", ttl=-1), "ttl must be"),
        (memory.recall(""), "query cannot be empty"),
        (memory.recall("kept", limit=0), "limit must be"),
        (memory.update(1, text=""), "cannot be empty"),
    ]
    for attempt, message in attempts:
        with pytest.raises(InvalidMemory, match=message):
            await attempt
    assert [fact.text for fact in await memory.list()] == ["kept"]
    with pytest.raises(InvalidMemory, match="invalid memory scope"):
        Memory(store, scope="everyone")
    remember, _, _ = memory.as_tools()
    assert (await _invoke(remember, {"text": "", "subject": None, "tags": None})).startswith("not remembered: a fact cannot be empty")
    assert [fact.text for fact in await memory.list()] == ["kept"]


async def test_an_agent_remembers_in_one_session_and_recalls_in_another(store: Store) -> None:
    """The model (the fake server) calls the tools; the database carries the fact across."""
    scope = fresh_scope()
    script = [
        call("remember", {"text": "Alice's favourite colour is blue", "subject": "alice", "tags": ["preferences"]}),
        text("Noted."),
        call("recall", {"query": "what is alice's favourite colour", "limit": 5}),
        text("Blue."),
        call("recall", {"query": "what is alice's favourite colour", "limit": 5}),
        text("I don't know."),
    ]
    with FakeModelServer(script) as server:
        model = OpenAIResponsesModel("gpt-4.1", server.client())

        def agent(memory: Memory) -> Agent[Any]:
            return Agent(name="assistant", instructions="remember things", model=model, tools=memory.as_tools())

        first = await Runner.run(agent(Memory(store, scope=scope)), "my favourite colour is blue", session=Session(store=store))
        assert first.final_output == "Noted."
        second = await Runner.run(agent(Memory(store, scope=scope)), "what is my favourite colour?", session=Session(store=store))
        assert second.final_output == "Blue."
        recalled = [item["output"] for item in server.requests[3].body["input"] if item.get("type") == "function_call_output"]
        assert len(recalled) == 1 and "Alice's favourite colour is blue (about alice)" in recalled[0]
        other = await Runner.run(agent(Memory(store, scope=fresh_scope())), "what is alice's favourite colour?", session=Session(store=store))
        assert other.final_output == "I don't know."
        nothing = [item["output"] for item in server.requests[5].body["input"] if item.get("type") == "function_call_output"]
        assert nothing == ["nothing remembered matches"]


async def test_a_namespace_has_its_own_memory(tmp_path: Path) -> None:
    async with await open_store(pglite_path=tmp_path) as default:
        tenant = Memory(namespace="tenant-memory", store=await open_store(pglite_path=tmp_path, namespace="tenant-memory"))
        try:
            await tenant.remember("the tenant's fact")
            assert await Memory(default).recall("tenant fact") == []
            assert [fact.text for fact in await tenant.recall("tenant fact")] == ["the tenant's fact"]
            with pytest.raises(InvalidMemory, match="namespace"):
                Memory(default, namespace="tenant-memory")
        finally:
            await (await tenant.store()).aclose()
            await drop_namespace(default, "tenant-memory")


async def test_memory_commands(tmp_path: Path) -> None:
    async with await open_store(pglite_path=tmp_path) as store:  # the command shares this sidecar
        memory = Memory(store, scope="agent:helper")
        fact = await memory.remember("Deploys happen on Tuesdays", subject="ops", tags=["schedule"])

        def timestep(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "timestep", "memory", *args, "--pglite-path", str(tmp_path)]
            return subprocess.run(command, capture_output=True, text=True, env=child_env(), timeout=300)

        listed = timestep("list", "--scope", "agent:helper")
        assert listed.returncode == 0 and "Deploys happen on Tuesdays" in listed.stdout and "(1 row)" in listed.stdout
        assert "(0 rows)" in timestep("list").stdout  # the global scope is another scope
        found = timestep("search", "when are deploys", "--scope", "agent:helper")
        assert found.returncode == 0 and "Deploys happen on Tuesdays" in found.stdout
        unknown = timestep("forget", "999999", "--scope", "agent:helper")
        assert unknown.returncode == 1 and "no fact 999999 in memory scope 'agent:helper'" in unknown.stderr
        forgot = timestep("forget", str(fact.id), "--scope", "agent:helper")
        assert forgot.returncode == 0, forgot.stderr
        assert await memory.list() == []


SYNONYMS = {"automobile": "car", "vehicle": "car", "cars": "car", "bike": "bicycle"}


def toy_embed(texts: list[str]) -> list[list[float]]:
    """A deterministic bag-of-words embedding (32 hashed buckets) that knows a few synonyms:
    enough to show ranking by similarity, with no model to download."""
    import hashlib
    import math

    vectors = []
    for text_ in texts:
        vector = [0.0] * 32
        for word in text_.lower().replace("'", " ").split():
            word = word.strip(".,?!")
            word = SYNONYMS.get(word, word)
            vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % 32] += 1.0
        norm = math.sqrt(sum(value * value for value in vector)) or 1.0
        vectors.append([value / norm for value in vector])
    return vectors


async def test_vector_recall_or_a_clear_fallback(store: Store) -> None:
    import warnings

    from timestep.memory import VectorRecallUnavailable

    memory = Memory(store, scope=fresh_scope(), embed=toy_embed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        car = await memory.remember("Alice drives a red car to work")
        await memory.remember("Bob rides a bicycle on weekends")
        await memory.remember("The meeting moved to Thursday")
    notices = [warning for warning in caught if issubclass(warning.category, VectorRecallUnavailable)]
    if store.backend == "pglite":  # PGlite's pgvector package is always there
        assert memory.vector_recall is True
    if memory.vector_recall:
        assert notices == []
        ranked = await memory.recall("which automobile does she use")  # no word in common with the fact
        assert ranked[0].id == car.id and ranked[0].score is not None and ranked[0].score > ranked[1].score
        await memory.update(car.id, text="Alice now takes the bike")  # re-embedded with the text

        def score(facts: list[Any]) -> float:
            return next(fact.score for fact in facts if fact.id == car.id)

        assert score(await memory.recall("bicycle")) > score(await memory.recall("automobile"))
    else:  # PostgreSQL without pgvector: told once, then full-text search
        assert len(notices) == 1 and "pgvector cannot be enabled" in str(notices[0].message)
        assert "full-text search" in str(notices[0].message)
        assert [fact.id for fact in await memory.recall("red car")] == [car.id]


async def test_a_bad_embedding_stores_nothing(tmp_path: Path) -> None:
    async with await open_store(pglite_path=tmp_path) as store:  # PGlite: pgvector is always there
        for embed, message in (
            (lambda texts: [[float("nan")] * 4 for _ in texts], "NaN or infinity"),
            (lambda texts: [], "returned 0 vectors for 1 text"),
        ):
            memory = Memory(store, scope=fresh_scope(), embed=embed)
            with pytest.raises(InvalidMemory, match=message):
                await memory.remember("anything")
            assert await memory.list() == []
