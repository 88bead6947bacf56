"""`timestep demo`: a run pauses for approval, is saved, and a second process finishes it.

With OPENAI_API_KEY set the agent uses a real model (gpt-4.1 through prefix routing);
without it, the Agents SDK's ScriptedModel plays the model's two replies, and the demo says so.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

from agents import Agent, Model, function_tool
from agents.testing import ScriptedModel, assistant_message, function_call

from .run_state import RunStateStore
from .runner import consume_result, run_agent
from .session import Session
from .store import Store, open_store

PROMPT = "Please send $5 to Bob."


@function_tool(needs_approval=True)
def wire_money(recipient: str, amount: float) -> str:
    """Send money to someone. Needs a human's approval."""
    return f"sent ${amount:g} to {recipient}"


def demo_agent(after_approval: bool) -> tuple[Agent[Any], str]:
    """The demo's agent, and a line saying which model it talks to."""
    model: str | Model
    if os.environ.get("OPENAI_API_KEY"):
        model, what = "gpt-4.1", "gpt-4.1 (OPENAI_API_KEY is set)"
    else:
        reply = (
            [assistant_message("Done: I sent $5 to Bob.")]
            if after_approval
            else [function_call("wire_money", {"recipient": "Bob", "amount": 5}, call_id="call_demo_1")]
        )
        model = ScriptedModel([reply])
        what = "the SDK's ScriptedModel, a scripted stand-in (set OPENAI_API_KEY for a real model)"
    agent = Agent(name="banker", instructions="Help with payments. Use wire_money to pay.", model=model, tools=[wire_money])
    return agent, what


def _say(step: str, text: str) -> None:
    print(f"[{step}] {text}", flush=True)


async def pause_and_save(store: Store) -> str:
    """Step 1, in this process: run until the agent asks for approval, then save."""
    agent, what = demo_agent(after_approval=False)
    _say("1", f"model: {what}")
    session = Session(store=store)
    _say("1", f"run {session.session_id}: user says {PROMPT!r}")
    runs = RunStateStore(agent, session.session_id, store=store)
    result = await consume_result(await run_agent(agent, PROMPT, session, run_store=runs))
    for item in result.interruptions:
        _say("1", f"paused: the agent wants to call {item.raw_item.name}({item.raw_item.arguments}) and needs approval")
    if not result.interruptions:
        _say("1", f"the model answered without asking: {result.final_output!r}")
        return session.session_id
    _say("1", "the durable run saved itself to the run_states table, paused; this process now lets go of it")
    return session.session_id


async def resume(store: Store, run_id: str) -> None:
    """Step 2, in another process: load the saved run, approve, finish."""
    agent, _ = demo_agent(after_approval=True)
    runs = RunStateStore(agent, run_id, store=store)
    state = await runs.load()
    for item in state.get_interruptions():
        _say("2", f"process {os.getpid()} loaded run {run_id}; a human approves {item.raw_item.name}")
        state.approve(item)
    # Claimed before anything runs: a second resume of this run, from anywhere, is refused.
    result = await consume_result(await run_agent(agent, state, Session(run_id, store=store), run_store=runs))
    for item in result.new_items:
        if item.type == "tool_call_output_item":
            _say("2", f"tool ran: {item.output!r}")
    _say("2", f"final answer: {result.final_output!r}")


async def main(uri: str | None, pglite_path: str | None, namespace: str | None = None) -> int:
    """The whole story; returns the exit code."""
    _quiet_tracing()
    async with await open_store(uri, pglite_path=pglite_path, namespace=namespace) as store:
        _say("0", f"store: {store.backend} at {store.location}")
        run_id = await pause_and_save(store)
    command = [sys.executable, "-m", "timestep.demo", "resume", run_id, json.dumps([uri, pglite_path, namespace])]
    _say("2", "starting a second Python process to resume it")
    if subprocess.run(command, check=False).returncode != 0:
        return 1
    async with await open_store(uri, pglite_path=pglite_path, namespace=namespace) as store:
        items = await Session(run_id, store=store).get_items()
        _say("3", f"back in process {os.getpid()}: the session holds {len(items)} items:")
        for item in items:
            print(f"      {_describe(item)}")
        run = await RunStateStore.find_run(run_id, store)
        _say("3", f"run_states says the run is {run.status}, with output {run.final_output!r}: it cannot run again")
    where = f" --uri {uri}" if uri else f" --pglite-path {pglite_path}" if pglite_path else ""
    where += f" --namespace {namespace}" if namespace else ""
    print(f"\nLook around: timestep sessions show {run_id}{where}")
    print(f"             timestep runs show {run_id}{where}")
    return 0


def _describe(item: dict[str, Any]) -> str:
    """One session item as a line: its kind and its text."""
    content = item.get("content")
    if isinstance(content, list):
        content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    kind = item.get("type") or "message"
    role = f" ({item['role']})" if item.get("role") else ""
    return f"{kind}{role}: {content or item.get('arguments') or item.get('output') or ''}"


def _quiet_tracing() -> None:
    """Without an OpenAI key there is nowhere to send traces: don't warn about it at every step."""
    if not os.environ.get("OPENAI_API_KEY"):
        from agents import set_tracing_disabled

        set_tracing_disabled(True)


def _resume_entry(run_id: str, where: str) -> None:
    uri, pglite_path, namespace = json.loads(where)
    _quiet_tracing()

    async def go() -> None:
        async with await open_store(uri, pglite_path=pglite_path, namespace=namespace) as store:
            await resume(store, run_id)

    asyncio.run(go())


if __name__ == "__main__":  # the second process: python -m timestep.demo resume RUN_ID WHERE
    _resume_entry(sys.argv[2], sys.argv[3])
