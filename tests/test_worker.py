"""`timestep worker`: every ready run is resumed by exactly one worker, on any number of them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import ledger
from conftest import child_env, require_postgres
from timestep import open_store
from timestep.run_state import RunStateStore
from timestep.runner import run_agent
from timestep.store import Store
from timestep.store.namespace import drop_namespace
from timestep.testing import FakeModelServer, RecordedRequest, Reply
from timestep.worker import Worker

pytestmark = pytest.mark.anyio

RUNS = 50
WORKERS = 4


@pytest.fixture
async def namespaced() -> AsyncIterator[tuple[str, str, Store]]:
    """A namespace of its own on the PostgreSQL server (no other test's runs in it), and the ledger."""
    uri = require_postgres()
    namespace = f"worker-{uuid.uuid4().hex[:12]}"
    async with await open_store(uri) as plain:
        await ledger.create_table(plain)
    store = await open_store(uri, namespace=namespace)
    # The test's own signal that a run finished (a run ends by an UPDATE, which notifies no
    # worker: workers wait for decisions and new runs).
    await store.execute_script(f"""
        CREATE FUNCTION notify_finished() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN PERFORM pg_notify({finished_channel(namespace)!r}, NEW.run_id); RETURN NULL; END $fn$;
        CREATE TRIGGER notify_finished AFTER UPDATE OF status ON run_states
            FOR EACH ROW WHEN (NEW.status = 'finished') EXECUTE FUNCTION notify_finished();
    """)
    try:
        yield uri, namespace, store
    finally:
        await store.aclose()
        async with await open_store(uri) as plain:
            await drop_namespace(plain, namespace)


def env_for(server: FakeModelServer, uri: str, batch: str, **extra: str) -> dict[str, str]:
    tests = str(Path(ledger.__file__).parent)
    return child_env(
        FAKE_MODEL_URL=server.base_url, LEDGER_URI=uri, LEDGER_BATCH=batch,
        PYTHONPATH=tests + os.pathsep + child_env()["PYTHONPATH"], **extra,
    )


def start_worker(uri: str, namespace: str, env: dict[str, str], *options: str) -> subprocess.Popen[str]:
    worker = subprocess.Popen(
        [sys.executable, "-m", "timestep", "worker", "--uri", uri, "--namespace", namespace, "--agent", "ledger:make_agent", *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert worker.stdout is not None and worker.stdout.readline().startswith("worker "), worker.communicate()[1]
    return worker


async def pause_runs(store: Store, count: int, first: int = 1) -> list[str]:
    """`count` durable runs, each paused for approval of pay(N)."""
    agent = ledger.make_agent()
    run_ids = []
    for amount in range(first, first + count):
        runs = RunStateStore(agent, f"pay-{amount}-{uuid.uuid4()}", store=store)
        result = await run_agent(agent, f"pay {amount}", None, run_store=runs)
        assert len(result.interruptions) == 1
        run_ids.append(runs.session_id)
    return run_ids


def finished_channel(namespace: str) -> str:
    return f"finished_{namespace.replace('-', '_')}"


async def until_finished(store: Store, namespace: str, run_ids: list[str]) -> None:
    """Returns once every run is finished: woken by the namespace's notifications that a run
    finished, never by a timer."""
    async def finished() -> int:
        # The namespace holds these runs only.
        return int(await store.fetchval("SELECT count(*) FROM run_states WHERE active AND status = 'finished'"))

    async def wait() -> None:
        async with store.listening(finished_channel(namespace)) as payloads:  # type: ignore[attr-defined]
            if await finished() == len(run_ids):
                return
            async for _ in payloads:
                if await finished() == len(run_ids):
                    return

    await asyncio.wait_for(wait(), 300)


async def test_four_workers_resume_fifty_runs_each_exactly_once(namespaced: tuple[str, str, Store], monkeypatch: pytest.MonkeyPatch) -> None:
    uri, namespace, store = namespaced
    batch = uuid.uuid4().hex
    with FakeModelServer([ledger.answer] * (2 * RUNS)) as server:
        monkeypatch.setenv("FAKE_MODEL_URL", server.base_url)
        run_ids = await pause_runs(store, RUNS)
        env = env_for(server, uri, batch)
        workers = [start_worker(uri, namespace, env, "--poll", "0.2") for _ in range(WORKERS)]
        try:
            def approve(some: list[str]) -> subprocess.CompletedProcess[str]:
                return subprocess.run(
                    [sys.executable, "-m", "timestep", "runs", "approve", "--uri", uri, "--namespace", namespace, *some],
                    capture_output=True, text=True, env=env, timeout=120,
                )

            # Five operators at once, ten runs each, while the workers wait for decisions.
            with ThreadPoolExecutor(5) as pool:
                approvals = list(pool.map(approve, [run_ids[start::5] for start in range(5)]))
            assert all(done.returncode == 0 for done in approvals), [done.stderr for done in approvals if done.returncode]
            await until_finished(store, namespace, run_ids)
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            out, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err  # SIGTERM: finish what it holds, exit 0
            assert "stopped after" in out
    paid = await store.fetch("SELECT amount, count(*) AS times FROM public.worker_ledger WHERE batch = $1 GROUP BY amount", batch)
    assert sorted((row["amount"], row["times"]) for row in paid) == [(amount, 1) for amount in range(1, RUNS + 1)]
    # Each run was claimed by one worker, once: started, then its pause claimed and finished.
    owners = {}
    for run_id in run_ids:
        history = await RunStateStore(ledger.make_agent(), run_id, store=store).history()
        assert [(h["status"], h["active"]) for h in history] == [("running", False), ("finished", True)]
        owners[run_id] = await store.fetchval("SELECT lease_owner FROM run_states WHERE run_id = $1 AND active", run_id)
    worker_pids = {str(worker.pid) for worker in workers}
    assert {owner.split(":")[1] for owner in owners.values()} <= worker_pids
    assert len(server.requests) == 2 * RUNS  # one model call to pause, one to finish: nothing twice


async def test_a_run_held_by_a_killed_worker_is_taken_by_another_once_its_lease_expires(namespaced: tuple[str, str, Store], monkeypatch: pytest.MonkeyPatch) -> None:
    uri, namespace, store = namespaced
    batch = uuid.uuid4().hex
    with FakeModelServer([ledger.answer] * 4) as server:
        monkeypatch.setenv("FAKE_MODEL_URL", server.base_url)
        [run_id] = await pause_runs(store, 1, first=7)
        await RunStateStore.decide(run_id, approve=True, store=store)
        doomed = start_worker(uri, namespace, env_for(server, uri, batch, LEDGER_HANG="7"), "--lease", "2", "--poll", "0.2")
        try:
            assert doomed.stdout is not None and doomed.stdout.readline() == "hanging\n"  # it holds the run, in the tool
            row = await store.fetchrow("SELECT status, lease_owner, lease_expires_at FROM run_states WHERE run_id = $1 AND active", run_id)
            assert row is not None and row["status"] == "running" and row["lease_owner"].split(":")[1] == str(doomed.pid)
            assert await Worker(ledger.make_agent(), store=store).run_once() == 0  # held: not ready
            doomed.send_signal(signal.SIGKILL)
            doomed.wait()
        finally:
            doomed.kill()
        # Its lease (2 s, renewed every third of it) outlives the kill by less than that: wait it out.
        expires = await store.fetchval("SELECT lease_expires_at FROM run_states WHERE run_id = $1 AND active", run_id)
        await store.fetchval("SELECT pg_sleep(greatest(0, extract(epoch FROM $1::timestamptz - clock_timestamp())))", expires)
        monkeypatch.setenv("LEDGER_URI", uri)
        monkeypatch.setenv("LEDGER_BATCH", batch)
        assert await Worker(ledger.make_agent(), store=store).run_once() == 1
    row = await store.fetchrow("SELECT status, final_output FROM run_states WHERE run_id = $1 AND active", run_id)
    assert row is not None and (row["status"], row["final_output"]) == ("finished", "done 7")
    paid = await store.fetch("SELECT pid FROM public.worker_ledger WHERE batch = $1", batch)
    assert [r["pid"] for r in paid] == [os.getpid()]  # the killed worker never paid


async def test_a_worker_on_pglite_resumes_decided_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = require_postgres()  # the ledger's table
    async with await open_store(uri) as plain:
        await ledger.create_table(plain)
    batch = uuid.uuid4().hex
    monkeypatch.setenv("LEDGER_URI", uri)
    monkeypatch.setenv("LEDGER_BATCH", batch)
    async with await open_store(pglite_path=tmp_path / "db") as store:
        with FakeModelServer([ledger.answer] * 6) as server:
            monkeypatch.setenv("FAKE_MODEL_URL", server.base_url)
            run_ids = await pause_runs(store, 3)
            # Decisions that are not a JSON object (written by another program) leave that run
            # to an operator; they do not stop the worker taking the others.
            await store.execute("UPDATE run_states SET decisions = '[\"approved\"]' WHERE run_id = $1 AND active", run_ids[2])
            worker = Worker(ledger.make_agent(), store=store)
            assert await worker.run_once() == 0  # nothing decided yet
            await RunStateStore.decide(run_ids[0], approve=True, store=store)
            await RunStateStore.decide(run_ids[1], approve=False, message="not paid", store=store)
            assert await worker.run_once() == 2
            assert await worker.run_once() == 0
        statuses = [(await RunStateStore.find_run(run_id, store)).status for run_id in run_ids]
    assert statuses == ["finished", "finished", "interrupted"]
    async with await open_store(uri) as plain:
        paid = await plain.fetch("SELECT amount FROM worker_ledger WHERE batch = $1", batch)
    assert [r["amount"] for r in paid] == [1]


async def test_a_decision_wakes_a_worker_and_sigterm_lets_it_finish_the_run_in_hand(namespaced: tuple[str, str, Store], monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL a worker waits for NOTIFY, not for its next look (here ten minutes away);
    SIGTERM while it runs a run: it finishes that run, then exits 0."""
    uri, namespace, store = namespaced
    batch = uuid.uuid4().hex
    in_flight, release = threading.Event(), threading.Event()

    def slow(request: RecordedRequest) -> Reply:
        in_flight.set()
        release.wait(120)
        return ledger.answer(request)

    with FakeModelServer([ledger.answer, slow]) as server:
        monkeypatch.setenv("FAKE_MODEL_URL", server.base_url)
        [run_id] = await pause_runs(store, 1, first=3)
        worker = start_worker(uri, namespace, env_for(server, uri, batch), "--poll", "600")
        try:
            await RunStateStore.decide(run_id, approve=True, store=store)
            assert await asyncio.to_thread(in_flight.wait, 60), "the worker did not wake on the decision"
            worker.send_signal(signal.SIGTERM)
            release.set()
            out, err = worker.communicate(timeout=120)
        finally:
            release.set()
            worker.kill()
    assert worker.returncode == 0, err
    assert "stopped after 1 run" in out
    row = await store.fetchrow("SELECT status, final_output FROM run_states WHERE run_id = $1 AND active", run_id)
    assert row is not None and (row["status"], row["final_output"]) == ("finished", "done 3")
