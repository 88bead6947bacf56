"""`Worker`: resumes the durable runs that are ready, in the background, on any number of machines.

A run is ready when every tool call it waits on has a recorded decision (`timestep runs
approve/reject`, `RunStateStore.decide`), or when it is `running` under a lease that expired
(the process running it died). The worker claims ready runs in bulk (`timestep_claim_runs`,
FOR UPDATE SKIP LOCKED: two workers never take one run), resumes each with the agent graph it
was given, and records how each ends, as `run_agent(..., run_store=...)` does. On PostgreSQL it
waits for a decision's notification; on PGlite it looks again every `poll_seconds`.

A run resumes with the session its journal says it wrote to, else the one named by its run id
(`Session(run_id)`), as `timestep runs resume` does: the README's runs use their session's id
as the run id.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from agents import Agent

from . import run_records
from .durable_run import RunLease, lease_owner
from .recovery import run_claimed
from .run_state import LEASE_SECONDS, RunStateStore
from .store import Store
from .store.default import store_or_default

logger = logging.getLogger("timestep.worker")

_CLAIM_READY = "SELECT run_id, id FROM timestep_claim_runs($1, $2, $3)"
CHANNEL = "timestep_runs"  # schema migration 13's trigger notifies it
PRUNE_EVERY_SECONDS = 3600.0


class Worker:
    """Resumes ready durable runs of `agent`'s graph, up to `concurrency` at a time."""

    def __init__(
        self,
        agent: Agent[Any],
        *,
        store: Store | None = None,
        concurrency: int = 4,
        lease_seconds: float = LEASE_SECONDS,
        poll_seconds: float = 1.0,
        journal_retention: dt.timedelta | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        if not lease_seconds > 0 or not poll_seconds > 0:
            raise ValueError("lease_seconds and poll_seconds must be positive")
        self.agent = agent
        self.concurrency = concurrency
        self.lease_seconds = float(lease_seconds)
        self.poll_seconds = float(poll_seconds)
        # Journals of finished runs older than this are pruned as the worker goes (at most once
        # every PRUNE_EVERY_SECONDS); None keeps them until `timestep runs prune`.
        if journal_retention is not None and journal_retention < dt.timedelta(0):
            raise ValueError(f"journal_retention must be zero or more, not {journal_retention!r}")
        self.journal_retention = journal_retention
        self._pruned_at: float | None = None
        self.owner = lease_owner()  # every lease this worker takes is in this name
        self.finished = 0  # runs this worker has run to a pause, an end or a failure
        self._store = store
        self._running: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    async def run(self, stop: asyncio.Event | None = None, ready: Callable[[], None] | None = None) -> None:
        """Take and run ready runs until `stop` is set; then take no more, let the runs in hand
        finish, and return. `ready` is called once the worker misses nothing: on PostgreSQL,
        once it listens for notifications."""
        store = await store_or_default(self._store)
        stop = stop or asyncio.Event()
        listener = None
        if store.backend == "postgres":
            listening = asyncio.Event()
            listener = asyncio.create_task(self._listen(store, listening))
            await listening.wait()  # set once listening, or once listening failed (then it polls)
        if ready is not None:
            ready()
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                self._wake.clear()  # before the look: a wake-up during it is not lost
                await self._take(store)
                await self._prune(store)
                waker = asyncio.create_task(self._wake.wait())
                await asyncio.wait({waker, stopping}, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
        finally:
            stopping.cancel()
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            if self._running:
                await asyncio.wait(self._running)

    async def run_once(self) -> int:
        """Take the runs ready now (up to `concurrency`), run them, and return how many."""
        store = await store_or_default(self._store)
        taken = await self._take(store)
        if self._running:
            await asyncio.wait(self._running)
        await self._prune(store)
        return taken

    async def _prune(self, store: Store) -> None:
        """Prune old journals of finished runs, if this worker keeps them for a limited time."""
        if self.journal_retention is None:
            return
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = now
        try:
            pruned = await run_records.prune_journals(self.journal_retention, store)
        except Exception as error:  # the runs matter more: try again at the next turn
            logger.warning("worker: pruning journals failed: %s", error)
            self._pruned_at = None
            return
        if pruned:
            logger.info("worker: pruned %d journal steps of finished runs", pruned)

    async def _take(self, store: Store) -> int:
        free = self.concurrency - len(self._running)
        if free <= 0:
            return 0
        rows = await store.fetch(_CLAIM_READY, self.owner, self.lease_seconds, free)
        for row in rows:
            task = asyncio.create_task(self._resume(store, row["run_id"], row["id"]), name=f"timestep worker: run {row['run_id']}")
            self._running.add(task)
            task.add_done_callback(self._done)
        return len(rows)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self.finished += 1
        self._wake.set()  # a slot is free

    async def _resume(self, store: Store, run_id: str, state_id: int) -> None:
        runs = RunStateStore(self.agent, run_id, store=store, lease_seconds=self.lease_seconds)
        lease = RunLease.held(runs, store, self.owner, state_id)
        try:
            await run_claimed(lease)
        except Exception as error:  # recorded as failed by run_claimed; the worker goes on
            logger.error("run %s failed: %s: %s", run_id, type(error).__name__, error)

    async def _listen(self, store: Store, listening: asyncio.Event) -> None:
        """Wake the worker when a decision is recorded or a run saved (PostgreSQL's NOTIFY)."""
        while True:
            try:
                async with store.listening(CHANNEL) as payloads:  # type: ignore[attr-defined]
                    listening.set()
                    self._wake.set()  # anything missed while not listening is found by a look
                    async for _ in payloads:
                        self._wake.set()
            except Exception as error:  # the server went away: polling goes on; listen again
                listening.set()
                logger.warning("worker: notifications stopped (%s); listening again", error)
                await asyncio.sleep(self.poll_seconds)
