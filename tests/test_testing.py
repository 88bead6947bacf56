"""The public fake model server, through the real openai client and Runner."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from agents import Agent, ModelSettings, Runner, function_tool

from timestep.testing import FakeModelServer, FunctionCall, call, calls, error, text

pytestmark = pytest.mark.anyio

executed: list[tuple[str, float]] = []


@function_tool
def wire_money(amount: float) -> str:
    """Send money."""
    executed.append(("wire_money", amount))
    return f"sent {amount}"


@function_tool
def check_balance(account: str) -> str:
    """Check a balance."""
    executed.append(("check_balance", 0))
    return f"{account}: 100"


async def run(agent: Agent[Any], prompt: str, stream: bool) -> Any:
    if not stream:
        return await Runner.run(agent, prompt)
    result = Runner.run_streamed(agent, prompt)
    async for _ in result.stream_events():
        pass
    return result


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streaming"])
@pytest.mark.parametrize("api", ["responses", "chat_completions"])
async def test_tool_call_then_answer(api: str, stream: bool) -> None:
    executed.clear()
    with FakeModelServer([calls(FunctionCall("wire_money", '{"amount": 5}'), ("check_balance", {"account": "main"})), text("Done: sent 5, balance 100.")]) as server:
        model = server.responses_model("gpt-4.1") if api == "responses" else server.chat_model("gpt-4.1")
        agent = Agent(name="banker", instructions="help", model=model, tools=[wire_money, check_balance], model_settings=ModelSettings(parallel_tool_calls=True, include_usage=True))
        result = await run(agent, "send 5", stream)
        assert result.final_output == "Done: sent 5, balance 100."
        assert sorted(executed) == [("check_balance", 0), ("wire_money", 5.0)]
        first, second = server.requests
        assert first.api == second.api == api and first.stream is stream
        assert first.model == "gpt-4.1" and first.authorization == "Bearer fake-key"
        assert "send 5" in first.text() and "help" in first.text()
        assert "sent 5.0" in second.text() and "main: 100" in second.text()
        assert server.remaining == 0
        assert result.context_wrapper.usage.input_tokens == 20


async def test_call_ids_follow_the_request_number() -> None:
    with FakeModelServer([call("wire_money", {"amount": 1}), text("ok")]) as server:
        agent = Agent(name="banker", model=server.responses_model(), tools=[wire_money])
        await Runner.run(agent, "go")
        outputs = [i for i in server.requests[1].body["input"] if i.get("type") == "function_call_output"]
        assert outputs[0]["call_id"] == "call_1_0"


async def test_exhausted_script_is_a_clear_client_error() -> None:
    with FakeModelServer([text("only one")]) as server:
        client = server.client()
        await client.responses.create(model="m", input="a")
        with pytest.raises(openai.BadRequestError, match="no reply left for request 2"):
            await client.responses.create(model="m", input="b")


async def test_error_replies_and_unknown_paths() -> None:
    with FakeModelServer([error(503, "overloaded")]) as server:
        client = server.client()
        with pytest.raises(openai.InternalServerError, match="overloaded"):
            await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.NotFoundError):
            await client.embeddings.create(model="m", input="x")


async def test_chat_stream_reports_usage_when_asked() -> None:
    with FakeModelServer([text("hello there", input_tokens=7, output_tokens=3)]) as server:
        stream = await server.client().chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True, stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello there"
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 10


async def test_the_pytest_fixture(fake_model_server: FakeModelServer) -> None:
    fake_model_server.add(lambda request: text(f"you said {json.dumps(request.body['input'])}"))
    response = await fake_model_server.client().responses.create(model="m", input="hi")
    assert response.output_text == 'you said "hi"'
    assert fake_model_server.base_url.startswith("http://127.0.0.1:")


def test_base_url_before_start_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match="context manager"):
        _ = FakeModelServer().base_url


async def test_two_hundred_concurrent_requests_are_all_answered() -> None:
    """Agents run in parallel against one server: none of 200 concurrent requests is dropped
    or left waiting on the listen backlog."""
    import asyncio

    with FakeModelServer([text(f"answer {n}") for n in range(200)]) as server:
        client = server.client()
        replies = await asyncio.gather(
            *(client.responses.create(model="gpt-4.1", input=f"question {n}") for n in range(200)),
            return_exceptions=True,
        )
        await client.close()
    failures = [reply for reply in replies if isinstance(reply, BaseException)]
    assert failures == []
    assert sorted(reply.output_text for reply in replies) == sorted(f"answer {n}" for n in range(200))  # type: ignore[union-attr]
    assert len(server.requests) == 200
