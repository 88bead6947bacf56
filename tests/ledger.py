"""An agent whose one tool pays into a table, so the worker tests count its executions there.

The worker processes import it (`--agent ledger:make_agent`). The model is the fake server at
FAKE_MODEL_URL, answering with `answer`; payments go to LEDGER_URI's `worker_ledger`, tagged
LEDGER_BATCH. A process with LEDGER_HANG=N prints "hanging" and blocks when it pays N.
"""

from __future__ import annotations

import os
import re
import threading

import psycopg
from agents import Agent, function_tool
from agents.models.openai_responses import OpenAIResponsesModel
from openai import AsyncOpenAI

from timestep.store import Store
from timestep.testing import RecordedRequest, Reply, call, text

CREATE = "CREATE TABLE IF NOT EXISTS worker_ledger (batch text NOT NULL, amount int NOT NULL, pid int NOT NULL)"


async def create_table(store: Store) -> None:
    """The ledger's table, made once however many test processes ask at the same moment
    (two CREATE TABLE IF NOT EXISTS at once can both try, and one fail)."""
    await store.execute_batch([("SELECT pg_advisory_xact_lock(hashtext('worker_ledger'))", []), (CREATE, [])])


@function_tool(needs_approval=True)
def pay(amount: int) -> str:
    """Pay an amount."""
    if os.environ.get("LEDGER_HANG") == str(amount):
        print("hanging", flush=True)
        threading.Event().wait()  # until the test kills this process
    with psycopg.connect(os.environ["LEDGER_URI"], autocommit=True) as connection:
        connection.execute(
            "INSERT INTO worker_ledger (batch, amount, pid) VALUES (%s, %s, %s)", (os.environ["LEDGER_BATCH"], amount, os.getpid())
        )
    return f"paid {amount}"


def make_agent() -> Agent:
    client = AsyncOpenAI(base_url=os.environ["FAKE_MODEL_URL"], api_key="fake-key", max_retries=0)
    return Agent(name="payer", instructions="pay", model=OpenAIResponsesModel(model="gpt-4.1", openai_client=client), tools=[pay])


def answer(request: RecordedRequest) -> Reply:
    """The model, for any number of runs at once: "pay N" calls pay(N); a payment's output, or
    a rejection saying "not paid", ends the run."""
    said = request.text()
    if "not paid" in said:
        return text("not done")
    paid = re.search(r"paid (\d+)", said)
    if paid:
        return text(f"done {paid.group(1)}")
    return call("pay", {"amount": int(re.search(r"pay (\d+)", said).group(1))})  # type: ignore[union-attr]
