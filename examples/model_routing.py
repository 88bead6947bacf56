"""The model's name picks its server: `ollama/...` a local Ollama (`OLLAMA_BASE_URL`, else
localhost:11434), `ollama/...-cloud` Ollama's cloud (`OLLAMA_API_KEY`), a prefix of your own any
OpenAI-compatible server (`TIMESTEP_PROVIDER_<NAME>_BASE_URL`), and a bare name OpenAI.

    python examples/model_routing.py ollama/gpt-oss:20b "hi"
    TIMESTEP_PROVIDER_VLLM_BASE_URL=http://gpu-box:8000/v1 python examples/model_routing.py vllm/Qwen/Qwen3-8B "hi"
"""

import asyncio
import sys

from agents import Agent

from timestep import run_agent
from timestep.models import ModelRoutingError


async def main(model: str, message: str) -> None:
    agent = Agent(name="assistant", instructions="Be brief.", model=model)
    result = await run_agent(agent, message)  # routes by prefix: no provider to configure
    print(f"{model}: {result.final_output}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    try:
        asyncio.run(main(sys.argv[1], sys.argv[2]))
    except ModelRoutingError as unknown:
        sys.exit(str(unknown))
