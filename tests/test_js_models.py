"""Model routing by prefix in JavaScript (js/models.mjs, through runAgent): the same prefixes,
environment variables and errors as timestep.models in Python, against fake servers."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from timestep.models import MultiModelProvider
from timestep.store.node import find_node
from timestep.testing import FakeModelServer, text

ROUTING = Path(__file__).parent / "js" / "routing.mjs"


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    with FakeModelServer([text("routed")] * 4) as fake:
        yield fake


def route(model: str, **env: str) -> dict[str, Any]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("OLLAMA_", "TIMESTEP_PROVIDER_", "OPENAI_"))}
    done = subprocess.run(
        [find_node(), str(ROUTING), model], capture_output=True, text=True, timeout=60,
        env={**clean, "OPENAI_API_KEY": "fake-key", **env}, cwd=ROUTING.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("model", ["gpt-4.1", "openai/gpt-4.1"])
def test_no_prefix_and_openai_go_to_openai(server: FakeModelServer, model: str) -> None:
    assert route(model, OPENAI_BASE_URL=server.base_url) == {"final": "routed"}
    assert [(request.api, request.model) for request in server.requests] == [("responses", "gpt-4.1")]


def test_ollama_local(server: FakeModelServer) -> None:
    assert route("ollama/gpt-oss:20b", OLLAMA_BASE_URL=server.base_url) == {"final": "routed"}
    assert [(request.api, request.model) for request in server.requests] == [("chat_completions", "gpt-oss:20b")]


def test_ollama_host_variable(server: FakeModelServer) -> None:
    host = server.base_url.removesuffix("/v1").removeprefix("http://")
    assert route("ollama/llama3", OLLAMA_HOST=host) == {"final": "routed"}
    assert [request.model for request in server.requests] == ["llama3"]


def test_ollama_cloud(server: FakeModelServer) -> None:
    assert route("ollama/gpt-oss:120b-cloud", OLLAMA_CLOUD_BASE_URL=server.base_url, OLLAMA_API_KEY="sk-ollama") == {"final": "routed"}
    [request] = server.requests
    assert (request.api, request.model, request.headers.get("authorization")) == ("chat_completions", "gpt-oss:120b", "Bearer sk-ollama")


def test_a_custom_prefix_from_the_environment(server: FakeModelServer) -> None:
    found = route(
        "local-ai/m1", TIMESTEP_PROVIDER_LOCAL_AI_BASE_URL=server.base_url, TIMESTEP_PROVIDER_LOCAL_AI_API="responses",
        TIMESTEP_PROVIDER_LOCAL_AI_API_KEY="sek",
    )
    assert found == {"final": "routed"}
    [request] = server.requests
    assert (request.api, request.model, request.headers.get("authorization")) == ("responses", "m1", "Bearer sek")


def python_error(model: str, **env: str) -> str:
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith(("OLLAMA_", "TIMESTEP_PROVIDER_")):
                patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        with pytest.raises(Exception) as raised:
            MultiModelProvider().get_model(model)
    assert type(raised.value).__name__ == "ModelRoutingError"
    return str(raised.value)


def test_an_unknown_prefix_is_the_same_error_in_both_languages() -> None:
    found = route("nope/x")
    assert found["error"] == "ModelRoutingError"
    assert found["message"] == (
        "unknown model prefix 'nope/' in 'nope/x'; known prefixes: ollama/, openai/. "
        "Add one with MultiModelProviderMap.addOpenAICompatible() or TIMESTEP_PROVIDER_NOPE_BASE_URL"
    )
    python = python_error("nope/x")
    # The same words; each language names its own method, and Python also knows the SDK's litellm/ and any-llm/.
    assert python.replace("add_openai_compatible", "addOpenAICompatible").replace("any-llm/, litellm/, ", "") == found["message"]


def test_a_cloud_model_without_a_key_names_the_variable_in_both_languages() -> None:
    found = route("ollama/big-cloud")
    message = "ollama/big-cloud is an Ollama cloud model: set OLLAMA_API_KEY to your ollama.com API key"
    assert found == {"error": "ModelRoutingError", "message": message}
    assert python_error("ollama/big-cloud") == message


def test_a_bad_api_in_the_environment_is_refused_in_both_languages() -> None:
    env = {"TIMESTEP_PROVIDER_X_BASE_URL": "http://127.0.0.1:9", "TIMESTEP_PROVIDER_X_API": "soap"}
    message = "TIMESTEP_PROVIDER_X_API='soap': use one of chat_completions, responses"
    assert route("x/m", **env) == {"error": "ModelRoutingError", "message": message}
    assert python_error("x/m", **env) == message
