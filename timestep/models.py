"""Model routing by prefix: `Agent(model="ollama/gpt-oss:20b")` picks the backend by name alone.

Built on the Agents SDK's own `MultiProvider` / `MultiProviderMap`, which route no prefix and
`openai/` to OpenAI and `litellm/` / `any-llm/` to their providers. Added here:

- `ollama/`: Ollama's OpenAI-compatible Chat Completions endpoint. The host is chosen per
  model: a name ending in `-cloud` goes to Ollama's cloud (`OLLAMA_CLOUD_BASE_URL`, default
  https://ollama.com/v1) as the name without `-cloud`, with `OLLAMA_API_KEY` as bearer token;
  any other name goes to the local server (`OLLAMA_BASE_URL`, else `OLLAMA_HOST`, else
  http://localhost:11434/v1).
- any OpenAI-compatible server under a prefix of your own, in one call
  (`add_openai_compatible`) or from the environment (`TIMESTEP_PROVIDER_<NAME>_BASE_URL`,
  `_API_KEY`, `_API`).
- an unknown prefix is an error that lists the known ones.

Clients are created on first use and reused per host; `aclose()` closes them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Literal

from agents.exceptions import UserError
from agents.models.interface import Model, ModelProvider
from agents.models.multi_provider import MultiProvider, MultiProviderMap
from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
from agents.models.openai_responses import OpenAIResponsesModel
from openai import AsyncOpenAI

from .errors import TimestepError

Api = Literal["chat_completions", "responses"]
APIS: tuple[str, ...] = ("chat_completions", "responses")

OLLAMA_LOCAL_URL = "http://localhost:11434/v1"
OLLAMA_CLOUD_URL = "https://ollama.com/v1"
CLOUD_SUFFIX = "-cloud"
NO_KEY = "unused"  # the openai client wants some key; local servers ignore it
_ENV_PROVIDER = re.compile(r"^TIMESTEP_PROVIDER_([A-Z0-9_]+)_BASE_URL$")
_SDK_PREFIXES = ("openai", "litellm", "any-llm")


class ModelRoutingError(TimestepError, UserError):
    """A model name cannot be routed: an unknown prefix, or a provider missing its key."""

    def __init__(self, message: str) -> None:
        TimestepError.__init__(self, message)
        self.message = message


class _Clients:
    """AsyncOpenAI clients, one per (base URL, key), created on first use."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str], AsyncOpenAI] = {}

    def get(self, base_url: str, api_key: str) -> AsyncOpenAI:
        key = (base_url, api_key)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = AsyncOpenAI(base_url=base_url, api_key=api_key)
        return client

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.close()


def _model(name: str, client: AsyncOpenAI, api: Api) -> Model:
    if api == "responses":
        return OpenAIResponsesModel(model=name, openai_client=client)
    return OpenAIChatCompletionsModel(model=name, openai_client=client)


class OpenAICompatibleProvider(ModelProvider):
    """Every model of one OpenAI-compatible server (vLLM, LM Studio, llama.cpp, a gateway)."""

    def __init__(self, *, base_url: str, api_key: str | None = None, api: Api = "chat_completions") -> None:
        if api not in APIS:
            raise ValueError(f"api must be one of {', '.join(APIS)}, not {api!r}")
        self.base_url = base_url
        self.api: Api = api
        self._api_key = api_key or NO_KEY
        self._clients = _Clients()

    def get_model(self, model_name: str | None) -> Model:
        if not model_name:
            raise ModelRoutingError(f"no model name given for the server at {self.base_url}")
        return _model(model_name, self._clients.get(self.base_url, self._api_key), self.api)

    async def aclose(self) -> None:
        await self._clients.aclose()


class OllamaProvider(ModelProvider):
    """`ollama/` models: the local Ollama server, or Ollama's cloud for `-cloud` models.

    The environment is read per model, so the host follows each model's name.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ
        self._clients = _Clients()

    def _env(self, name: str) -> str | None:
        environ = os.environ if self._environ is None else self._environ
        return environ.get(name) or None

    def local_url(self) -> str:
        configured = self._env("OLLAMA_BASE_URL")
        if configured:
            return configured.rstrip("/")
        host = self._env("OLLAMA_HOST")
        if host:
            url = host if "://" in host else f"http://{host}"
            return url.rstrip("/") + "/v1"
        return OLLAMA_LOCAL_URL

    def get_model(self, model_name: str | None) -> Model:
        if not model_name:
            raise ModelRoutingError("no model name after ollama/ (e.g. ollama/gpt-oss:20b)")
        if model_name.endswith(CLOUD_SUFFIX):
            api_key = self._env("OLLAMA_API_KEY")
            if api_key is None:
                raise ModelRoutingError(
                    f"ollama/{model_name} is an Ollama cloud model: set OLLAMA_API_KEY to your "
                    "ollama.com API key"
                )
            base_url = (self._env("OLLAMA_CLOUD_BASE_URL") or OLLAMA_CLOUD_URL).rstrip("/")
            return _model(model_name[: -len(CLOUD_SUFFIX)], self._clients.get(base_url, api_key), "chat_completions")
        return _model(model_name, self._clients.get(self.local_url(), "ollama"), "chat_completions")

    async def aclose(self) -> None:
        await self._clients.aclose()


class MultiModelProviderMap(MultiProviderMap):
    """The SDK's prefix -> provider map, plus OpenAI-compatible servers in one call."""

    def add_openai_compatible(
        self, prefix: str, *, base_url: str, api_key: str | None = None, api: Api = "chat_completions"
    ) -> OpenAICompatibleProvider:
        """Route `<prefix>/<model>` to an OpenAI-compatible server; returns its provider."""
        if not prefix or "/" in prefix:
            raise ValueError(f"a prefix is a non-empty name without '/', not {prefix!r}")
        provider = OpenAICompatibleProvider(base_url=base_url, api_key=api_key, api=api)
        self.add_provider(prefix, provider)
        return provider

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MultiModelProviderMap:
        """A map with a provider for each `TIMESTEP_PROVIDER_<NAME>_BASE_URL` in the environment.

        `<NAME>` lower-cased, `_` as `-`, is the prefix; `TIMESTEP_PROVIDER_<NAME>_API_KEY` and
        `TIMESTEP_PROVIDER_<NAME>_API` (`chat_completions` or `responses`) are optional.
        """
        environ = os.environ if environ is None else environ
        provider_map = cls()
        for variable, base_url in sorted(environ.items()):
            match = _ENV_PROVIDER.match(variable)
            if not match or not base_url:
                continue
            name = match.group(1)
            api = environ.get(f"TIMESTEP_PROVIDER_{name}_API") or "chat_completions"
            if api not in APIS:
                raise ModelRoutingError(
                    f"TIMESTEP_PROVIDER_{name}_API={api!r}: use one of {', '.join(APIS)}"
                )
            provider_map.add_openai_compatible(
                name.lower().replace("_", "-"),
                base_url=base_url,
                api_key=environ.get(f"TIMESTEP_PROVIDER_{name}_API_KEY"),
                api=api,  # type: ignore[arg-type]
            )
        return provider_map


class MultiModelProvider(MultiProvider):
    """Routes a model by its name's prefix: none or `openai/` to OpenAI, `ollama/` to Ollama,
    `litellm/` and `any-llm/` as the SDK does, and any prefix in `provider_map`.

    Without a `provider_map`, the environment's `TIMESTEP_PROVIDER_*` servers are included.
    Every other keyword argument is the SDK `MultiProvider`'s (`openai_api_key`,
    `openai_base_url`, `openai_use_responses`, ...).
    """

    def __init__(self, *, provider_map: MultiProviderMap | None = None, **kwargs: Any) -> None:
        provider_map = provider_map if provider_map is not None else MultiModelProviderMap.from_env()
        if not provider_map.has_prefix("ollama"):
            provider_map.add_provider("ollama", OllamaProvider())
        super().__init__(provider_map=provider_map, **kwargs)

    @classmethod
    def extending(cls, provider: MultiProvider) -> MultiModelProvider:
        """Prefix routing on top of an SDK `MultiProvider`: its OpenAI provider and its prefix
        map are kept (its prefixes win), and `ollama/` and the environment's are added."""
        provider_map = MultiModelProviderMap.from_env()
        if provider.provider_map is not None:
            for prefix, mapped in provider.provider_map.get_mapping().items():
                provider_map.add_provider(prefix, mapped)
        routing = cls(provider_map=provider_map)
        routing.openai_provider = provider.openai_provider
        return routing

    def known_prefixes(self) -> list[str]:
        mapped = list(self.provider_map.get_mapping()) if self.provider_map is not None else []
        return sorted({*_SDK_PREFIXES, *mapped})

    def get_model(self, model_name: str | None) -> Model:
        if model_name and "/" in model_name and self._unknown_prefix_mode == "error":
            prefix = model_name.split("/", 1)[0]
            mapped = self.provider_map is not None and self.provider_map.has_prefix(prefix)
            if not mapped and prefix not in _SDK_PREFIXES:
                known = ", ".join(f"{p}/" for p in self.known_prefixes())
                raise ModelRoutingError(
                    f"unknown model prefix {prefix + '/'!r} in {model_name!r}; known prefixes: {known}. "
                    "Add one with MultiModelProviderMap.add_openai_compatible() or "
                    f"TIMESTEP_PROVIDER_{prefix.upper().replace('-', '_')}_BASE_URL"
                )
        return super().get_model(model_name)
