"""The agent graph the durable-run tests pause and resume, importable by child processes.

The model is the fake server at FAKE_MODEL_URL (set by the test before the child starts).
"""

from __future__ import annotations

import os

from agents import Agent, function_tool
from agents.models.openai_responses import OpenAIResponsesModel
from openai import AsyncOpenAI

executed: list[str] = []


@function_tool(needs_approval=True)
def wire_money(amount: float) -> str:
    """Send money."""
    executed.append(f"wire_money {amount}")
    return f"sent {amount}"


@function_tool(needs_approval=True)
def close_account(account: str) -> str:
    """Close an account."""
    executed.append(f"close_account {account}")
    return f"closed {account}"


def make_agent(base_url: str | None = None) -> Agent:
    client = AsyncOpenAI(base_url=base_url or os.environ["FAKE_MODEL_URL"], api_key="fake-key", max_retries=0)
    return Agent(name="banker", instructions="help", model=OpenAIResponsesModel(model="gpt-4.1", openai_client=client), tools=[wire_money, close_account])


def make_triage(base_url: str | None = None) -> Agent:
    """`triage` hands off to `banker`: the graph for a run that changes agent before it pauses."""
    banker = make_agent(base_url)
    return Agent(name="triage", instructions="route", model=banker.model, handoffs=[banker])


def make_graph(name: str, base_url: str | None = None) -> Agent:
    """The entry agent of graph `name` ("banker" or "triage")."""
    return {"banker": make_agent, "triage": make_triage}[name](base_url)
