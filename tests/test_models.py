"""Model routing by prefix, against fake servers playing OpenAI and Ollama (local and cloud)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from agents import Agent, ModelSettings, RunConfig, Runner, function_tool
from agents.exceptions import UserError
from agents.models.multi_provider import MultiProviderMap

from timestep.models import ModelRoutingError, MultiModelProvider, MultiModelProviderMap, OllamaProvider
from timestep.testing import FakeModelServer, call, text

pytestmark = pytest.mark.anyio


@pytest.fixture
def servers() -> Iterator[dict[str, FakeModelServer]]:
    with FakeModelServer() as openai, FakeModelServer() as ollama, FakeModelServer() as cloud, FakeModelServer() as vllm:
        yield {"openai": openai, "ollama": ollama, "cloud": cloud, "vllm": vllm}


@pytest.fixture
def ollama_env(monkeypatch: pytest.MonkeyPatch, servers: dict[str, FakeModelServer]) -> None:
    for name in ("OLLAMA_BASE_URL", "OLLAMA_HOST", "OLLAMA_API_KEY", "OLLAMA_CLOUD_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OLLAMA_BASE_URL", servers["ollama"].base_url)
    monkeypatch.setenv("OLLAMA_CLOUD_BASE_URL", servers["cloud"].base_url)
    monkeypatch.setenv("OLLAMA_API_KEY", "ollama-cloud-key")


def provider(servers: dict[str, FakeModelServer], **kwargs: Any) -> MultiModelProvider:
    return MultiModelProvider(openai_base_url=servers["openai"].base_url, openai_api_key="sk-openai", **kwargs)


executed: list[float] = []


@function_tool
def wire_money(amount: float) -> str:
    """Send money."""
    executed.append(amount)
    return f"sent {amount}"


async def run(model: str, routing: MultiModelProvider, stream: bool) -> Any:
    executed.clear()
    agent = Agent(name="banker", instructions="help", model=model, tools=[wire_money], model_settings=ModelSettings(include_usage=True))
    config = RunConfig(model_provider=routing)
    if not stream:
        return await Runner.run(agent, "send 5", run_config=config)
    result = Runner.run_streamed(agent, "send 5", run_config=config)
    async for _ in result.stream_events():
        pass
    return result


def only_requests(servers: dict[str, FakeModelServer], name: str) -> list[Any]:
    """The requests `name` received, after checking no other server received any."""
    others = {other: len(s.requests) for other, s in servers.items() if other != name}
    assert others == dict.fromkeys(others, 0), f"requests went astray: {others}"
    return servers[name].requests


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streaming"])
@pytest.mark.parametrize("model", ["gpt-4.1", "openai/gpt-4.1"])
async def test_openai_by_default(servers: dict[str, FakeModelServer], ollama_env: None, model: str, stream: bool) -> None:
    servers["openai"].add(call("wire_money", {"amount": 5}), text("Sent."))
    result = await run(model, provider(servers), stream)
    assert result.final_output == "Sent." and executed == [5.0]
    requests = only_requests(servers, "openai")
    assert [(r.api, r.model, r.authorization, r.stream) for r in requests] == [("responses", "gpt-4.1", "Bearer sk-openai", stream)] * 2


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streaming"])
async def test_ollama_local(servers: dict[str, FakeModelServer], ollama_env: None, stream: bool) -> None:
    servers["ollama"].add(call("wire_money", {"amount": 5}), text("Sent."))
    result = await run("ollama/gpt-oss:20b", provider(servers), stream)
    assert result.final_output == "Sent." and executed == [5.0]
    requests = only_requests(servers, "ollama")
    assert [(r.api, r.model, r.authorization, r.stream) for r in requests] == [("chat_completions", "gpt-oss:20b", "Bearer ollama", stream)] * 2
    assert "sent 5" in requests[1].text()


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streaming"])
async def test_ollama_cloud(servers: dict[str, FakeModelServer], ollama_env: None, stream: bool) -> None:
    servers["cloud"].add(call("wire_money", {"amount": 5}), text("Sent."))
    result = await run("ollama/gpt-oss:20b-cloud", provider(servers), stream)
    assert result.final_output == "Sent."
    requests = only_requests(servers, "cloud")
    assert [(r.model, r.authorization) for r in requests] == [("gpt-oss:20b", "Bearer ollama-cloud-key")] * 2


async def test_ollama_host_is_decided_per_model(servers: dict[str, FakeModelServer], ollama_env: None) -> None:
    routing = provider(servers)
    servers["cloud"].add(text("from the cloud"))
    servers["ollama"].add(text("from the laptop"))
    first = await run("ollama/gpt-oss:120b-cloud", routing, False)
    second = await run("ollama/llama3.2", routing, False)
    assert (first.final_output, second.final_output) == ("from the cloud", "from the laptop")
    assert [r.model for r in servers["cloud"].requests] == ["gpt-oss:120b"]
    assert [r.model for r in servers["ollama"].requests] == ["llama3.2"]


async def test_ollama_host_variable(monkeypatch: pytest.MonkeyPatch, servers: dict[str, FakeModelServer]) -> None:
    monkeypatch.delenv("OLLAMA_BASE_URL", raising=False)
    host = servers["ollama"].base_url.removeprefix("http://").removesuffix("/v1")
    monkeypatch.setenv("OLLAMA_HOST", host)
    assert OllamaProvider().local_url() == servers["ollama"].base_url
    monkeypatch.delenv("OLLAMA_HOST")
    assert OllamaProvider().local_url() == "http://localhost:11434/v1"


async def test_cloud_model_without_key_names_the_variable(monkeypatch: pytest.MonkeyPatch, servers: dict[str, FakeModelServer], ollama_env: None) -> None:
    monkeypatch.delenv("OLLAMA_API_KEY")
    with pytest.raises(ModelRoutingError, match="set OLLAMA_API_KEY"):
        provider(servers).get_model("ollama/gpt-oss:20b-cloud")


@pytest.mark.parametrize("api", ["chat_completions", "responses"])
async def test_custom_openai_compatible_prefix(servers: dict[str, FakeModelServer], ollama_env: None, api: str) -> None:
    provider_map = MultiModelProviderMap()
    provider_map.add_openai_compatible("vllm", base_url=servers["vllm"].base_url, api_key="vllm-key", api=api)  # type: ignore[arg-type]
    servers["vllm"].add(call("wire_money", {"amount": 5}), text("Sent."))
    result = await run("vllm/Qwen/Qwen3-8B", provider(servers, provider_map=provider_map), True)
    assert result.final_output == "Sent."
    requests = only_requests(servers, "vllm")
    assert [(r.api, r.model, r.authorization) for r in requests] == [(api, "Qwen/Qwen3-8B", "Bearer vllm-key")] * 2


async def test_custom_prefix_from_the_environment(monkeypatch: pytest.MonkeyPatch, servers: dict[str, FakeModelServer], ollama_env: None) -> None:
    monkeypatch.setenv("TIMESTEP_PROVIDER_LM_STUDIO_BASE_URL", servers["vllm"].base_url)
    monkeypatch.setenv("TIMESTEP_PROVIDER_LM_STUDIO_API_KEY", "lm-key")
    servers["vllm"].add(text("hello"))
    result = await run("lm-studio/qwen3", provider(servers), False)
    assert result.final_output == "hello"
    assert [(r.api, r.model, r.authorization) for r in servers["vllm"].requests] == [("chat_completions", "qwen3", "Bearer lm-key")]


def test_bad_api_in_the_environment_is_named() -> None:
    with pytest.raises(ModelRoutingError, match="TIMESTEP_PROVIDER_X_API='soap'"):
        MultiModelProviderMap.from_env({"TIMESTEP_PROVIDER_X_BASE_URL": "http://h/v1", "TIMESTEP_PROVIDER_X_API": "soap"})


def test_unknown_prefix_lists_the_known_ones(servers: dict[str, FakeModelServer]) -> None:
    provider_map = MultiModelProviderMap()
    provider_map.add_openai_compatible("vllm", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ModelRoutingError) as caught:
        provider(servers, provider_map=provider_map).get_model("mistral/large")
    assert isinstance(caught.value, UserError)
    message = str(caught.value)
    assert "'mistral/'" in message
    for prefix in ("openai/", "ollama/", "vllm/", "litellm/", "any-llm/"):
        assert prefix in message
    assert "TIMESTEP_PROVIDER_MISTRAL_BASE_URL" in message


def test_sdk_prefixes_still_reach_the_sdk(servers: dict[str, FakeModelServer]) -> None:
    """litellm/ is the SDK's: without the litellm package it fails with the SDK's own message."""
    with pytest.raises(ImportError, match="litellm"):
        provider(servers).get_model("litellm/openai/gpt-4.1")


def test_the_sdk_map_methods_are_kept() -> None:
    provider_map = MultiModelProviderMap()
    assert isinstance(provider_map, MultiProviderMap)
    added = provider_map.add_openai_compatible("a", base_url="http://127.0.0.1:9/v1")
    assert provider_map.has_prefix("a") and provider_map.get_provider("a") is added
    assert provider_map.get_mapping() == {"a": added}
    provider_map.set_mapping({"b": added})
    assert not provider_map.has_prefix("a") and provider_map.get_provider("b") is added
    provider_map.remove_provider("b")
    assert provider_map.get_mapping() == {}
    with pytest.raises(ValueError):
        provider_map.add_openai_compatible("a/b", base_url="http://127.0.0.1:9/v1")


async def test_clients_are_lazy_reused_per_host_and_closed(servers: dict[str, FakeModelServer], ollama_env: None) -> None:
    routing = provider(servers)
    first = routing.get_model("ollama/llama3.2")
    second = routing.get_model("ollama/qwen3")
    cloud = routing.get_model("ollama/gpt-oss:20b-cloud")
    assert first._client is second._client  # type: ignore[attr-defined]
    assert cloud._client is not first._client  # type: ignore[attr-defined]
    await routing.aclose()
    assert first._client.is_closed() and cloud._client.is_closed()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("model", "server", "sent_as", "auth"),
    [
        ("gpt-4.1", "openai", "gpt-4.1", "Bearer sk-env-openai"),
        ("openai/gpt-4.1", "openai", "gpt-4.1", "Bearer sk-env-openai"),
        ("ollama/gpt-oss:20b", "ollama", "gpt-oss:20b", "Bearer ollama"),
        ("ollama/gpt-oss:20b-cloud", "cloud", "gpt-oss:20b", "Bearer ollama-cloud-key"),
        ("vllm/Qwen/Qwen3-8B", "vllm", "Qwen/Qwen3-8B", "Bearer vllm-env-key"),
    ],
)
async def test_run_agent_routes_each_prefix(
    monkeypatch: pytest.MonkeyPatch, servers: dict[str, FakeModelServer], ollama_env: None, model: str, server: str, sent_as: str, auth: str
) -> None:
    """run_agent routes by prefix by default: RunConfig()'s SDK provider is extended, not replaced."""
    from timestep.runner import consume_result, run_agent

    monkeypatch.setenv("OPENAI_BASE_URL", servers["openai"].base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-openai")
    monkeypatch.setenv("TIMESTEP_PROVIDER_VLLM_BASE_URL", servers["vllm"].base_url)
    monkeypatch.setenv("TIMESTEP_PROVIDER_VLLM_API_KEY", "vllm-env-key")
    servers[server].add(call("wire_money", {"amount": 5}), text("Sent."))
    agent = Agent(name="banker", instructions="help", model=model, tools=[wire_money])
    result = await consume_result(await run_agent(agent, "send 5", None, stream=True, run_config=RunConfig()))
    assert result.final_output == "Sent."
    requests = only_requests(servers, server)
    assert [(r.model, r.authorization) for r in requests] == [(sent_as, auth)] * 2


async def test_run_agent_without_run_config_routes_ollama(servers: dict[str, FakeModelServer], ollama_env: None) -> None:
    from timestep.runner import run_agent

    servers["ollama"].add(text("hello from ollama"))
    result = await run_agent(Agent(name="a", model="ollama/llama3.2"), "hi", None)
    assert result.final_output == "hello from ollama"
    assert [r.model for r in only_requests(servers, "ollama")] == ["llama3.2"]


def test_openai_without_a_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    import openai

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(openai.OpenAIError, match="OPENAI_API_KEY"):
        MultiModelProvider().get_model("gpt-4.1")
