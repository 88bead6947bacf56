"""A durable run that waits for a human. The first command starts a payment: the run pauses for
approval, saves itself and exits. The second, in any process on the same database, approves
(or rejects) and finishes it. A run is finished once: a second approval is refused.

    python examples/durable_approval.py "send 5 to Bob"
    python examples/durable_approval.py --approve RUN_ID      # or --reject RUN_ID
"""

import argparse
import asyncio
import sys

from bank import banker

from timestep import RunStateStore, Session, run_agent
from timestep.errors import RunNotResumable


async def start(request: str) -> None:
    session = Session()  # the run id is the session's id
    runs = RunStateStore(agent=banker, session_id=session.session_id)
    result = await run_agent(banker, request, session, run_store=runs)
    for item in result.interruptions:
        print(f"waiting for approval: {item.name}({item.arguments})")
    print(f"run id: {session.session_id}")


async def decide(run_id: str, approve: bool) -> None:
    runs = RunStateStore(agent=banker, session_id=run_id)
    state = await runs.load()
    for item in state.get_interruptions():
        if approve:
            state.approve(item)
        else:
            state.reject(item, rejection_message="The payment was not approved.")
    result = await run_agent(banker, state, Session(run_id), run_store=runs)
    print(result.final_output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("request", nargs="?", help="what to ask the banker")
    parser.add_argument("--approve", metavar="RUN_ID", help="approve a paused run and finish it")
    parser.add_argument("--reject", metavar="RUN_ID", help="reject a paused run's calls and finish it")
    args = parser.parse_args()
    try:
        if args.approve or args.reject:
            asyncio.run(decide(args.approve or args.reject, approve=bool(args.approve)))
        elif args.request:
            asyncio.run(start(args.request))
        else:
            parser.error("give a request, --approve RUN_ID or --reject RUN_ID")
    except RunNotResumable as refused:
        sys.exit(f"cannot resume: {refused}")


if __name__ == "__main__":
    main()
