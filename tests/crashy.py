"""The run the crash-recovery tests kill and recover, importable by child processes.

Four model calls: step_a, then step_b, then pair_c and pair_d at once, then the answer "done".
Every tool execution appends a line to the file CRASHY_LEDGER, with the key timestep gives the
call (`tool_call_key()`). A process with CRASH_AT set
kills itself (SIGKILL) at that moment of the run:

- `llm_end:N`: once the N-th model response has returned (and been journaled);
- `tool_end:NAME`: once tool NAME has returned (its output journaled);
- `tool_body:NAME`: inside tool NAME, after its side effect (the ledger line), before it returns.

The run's session is `Session(run_id)`, or with CRASHY_BRANCH set `AdvancedSession(run_id)` on
that branch. With CRASHY_APPROVE_B=1, step_b needs approval (the run pauses before it); with CRASHY_TRIAGE=1,
the run begins with `triage`, which hands off to `crashy` (one more model call).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from collections.abc import Callable
from typing import Any

from agents import Agent, RunHooks, function_tool
from agents.models.openai_responses import OpenAIResponsesModel
from openai import AsyncOpenAI

from timestep import tool_call_key
from timestep.advanced_session import AdvancedSession
from timestep.session import Session
from timestep.store import Store
from timestep.testing import FunctionCall, RecordedRequest, Reply, call, calls, text

# The call id the model gives each tool's call (answer).
CALL_IDS = {"step_a": "a1", "step_b": "b2", "pair_c": "c3", "pair_d": "d4"}


def _crash_if(moment: str) -> None:
    if os.environ.get("CRASH_AT") == moment:
        os.kill(os.getpid(), signal.SIGKILL)


def _execute(name: str, n: int) -> str:
    with open(os.environ["CRASHY_LEDGER"], "a") as ledger:
        ledger.write(f"{name} {n}|{tool_call_key()}\n")
    _crash_if(f"tool_body:{name}")
    return f"{name} did {n}"


@function_tool
def step_a(n: int) -> str:
    """Step A."""
    return _execute("step_a", n)


def _b_needs_approval(_context: Any, _params: Any, _call_id: str) -> bool:
    return os.environ.get("CRASHY_APPROVE_B") == "1"


@function_tool(needs_approval=_b_needs_approval)
def step_b(n: int) -> str:
    """Step B."""
    return _execute("step_b", n)


@function_tool
def pair_c(n: int) -> dict[str, int]:
    """One of a pair."""
    _execute("pair_c", n)
    return {"c": n}


@function_tool
async def pair_d(n: int) -> str:
    """The other of the pair."""
    return _execute("pair_d", n)


class CrashHooks(RunHooks[Any]):
    """Kills this process at the moment CRASH_AT names."""

    def __init__(self) -> None:
        self.responses = 0

    async def on_llm_end(self, context: Any, agent: Any, response: Any) -> None:
        self.responses += 1
        _crash_if(f"llm_end:{self.responses}")

    async def on_tool_end(self, context: Any, agent: Any, tool: Any, result: Any) -> None:
        _crash_if(f"tool_end:{tool.name}")


def make_agent(base_url: str | None = None) -> Agent[Any]:
    """The run's entry agent: `crashy`, or with CRASHY_TRIAGE=1 `triage`, which hands off to it."""
    client = AsyncOpenAI(base_url=base_url or os.environ["FAKE_MODEL_URL"], api_key="fake-key", max_retries=0)
    model = OpenAIResponsesModel(model="gpt-4.1", openai_client=client)
    crashy = Agent(name="crashy", instructions="do the steps", model=model, tools=[step_a, step_b, pair_c, pair_d])
    if os.environ.get("CRASHY_TRIAGE") == "1":
        return Agent(name="triage", instructions="route", model=model, handoffs=[crashy])
    return crashy


async def session(run_id: str, store: Store) -> Session:
    """The run's session: a Session, or with CRASHY_BRANCH an AdvancedSession on that branch."""
    branch = os.environ.get("CRASHY_BRANCH")
    if not branch:
        return Session(run_id, store=store)
    advanced = AdvancedSession(run_id, store=store)
    await advanced.switch_to_branch(branch)
    return advanced


def answer(request: RecordedRequest) -> Reply:
    """The model: triage hands off; crashy takes the next step after the tool outputs so far."""
    if request.body.get("instructions") == "route":
        return call("transfer_to_crashy", {}, call_id="h0")
    outputs = [
        item for item in request.body.get("input", []) if item.get("type") == "function_call_output" and item.get("call_id") != "h0"
    ]
    if not outputs:
        return call("step_a", {"n": 1}, call_id="a1")
    if len(outputs) == 1:
        return call("step_b", {"n": 2}, call_id="b2")
    if len(outputs) == 2:
        return calls(FunctionCall("pair_c", json.dumps({"n": 3}), "c3"), FunctionCall("pair_d", json.dumps({"n": 4}), "d4"))
    return text("done")


def answer_cutting_the_third_stream(doomed: list[Any]) -> Callable[[RecordedRequest], Reply]:
    """`answer`, but the third response's stream is cut halfway: the process doomed[0] is
    killed (SIGKILL) in the middle of it."""
    answered = 0

    def cutting(request: RecordedRequest) -> Reply:
        nonlocal answered
        answered += 1
        reply = answer(request)
        if answered == 3:
            return Reply(calls=reply.calls, midway=lambda: doomed[0].send_signal(signal.SIGKILL))
        return reply

    return cutting


def executions(ledger: Path) -> list[str]:
    """The tool executions the ledger holds, in order ("step_a 1")."""
    return [line.split("|")[0] for line in _lines(ledger)]


def call_keys(ledger: Path) -> dict[str, set[str]]:
    """The tool_call_key() each tool's executions saw."""
    keys: dict[str, set[str]] = {}
    for line in _lines(ledger):
        execution, key = line.split("|")
        keys.setdefault(execution.split()[0], set()).add(key)
    return keys


def _lines(ledger: Path) -> list[str]:
    return ledger.read_text().splitlines() if ledger.exists() else []
