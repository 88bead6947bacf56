"""Workers resume runs in the background. This starts three payments, which pause for approval;
approves them as an operator would (`timestep runs approve RUN_ID` does the same from a shell);
and lets a worker finish them. In production the worker is a service of its own, started with
`timestep worker --agent bank:banker` from this directory, on as many machines as you like.

    python examples/worker.py
"""

import asyncio

from bank import banker

from timestep import RunStateStore, Session, run_agent
from timestep.worker import Worker


async def main() -> None:
    run_ids = []
    for amount in (5, 10, 20):
        session = Session()
        runs = RunStateStore(agent=banker, session_id=session.session_id)
        await run_agent(banker, f"send {amount}", session, run_store=runs)
        run_ids.append(session.session_id)

    for run_id in run_ids:
        await RunStateStore.decide(run_id, approve=True)

    worker = Worker(banker, concurrency=2)
    while await worker.run_once():  # until no run is ready
        pass

    for run_id in run_ids:
        run = await RunStateStore.find_run(run_id)
        print(f"{run_id}: {run.status}, {run.final_output!r}")


if __name__ == "__main__":
    asyncio.run(main())
