"""A conversation that outlives its process, as in a notebook whose kernel restarts: each command
adds a turn to the session it names, and the agent sees every earlier turn.

    python examples/chat_session.py alice "my name is Alice"
    python examples/chat_session.py alice "what is my name?"
"""

import asyncio
import sys

from agents import Agent, Runner

from timestep import Session

agent = Agent(name="assistant", instructions="Be brief.", model="gpt-4.1")


async def main(session_id: str, message: str) -> None:
    session = Session(session_id)
    result = await Runner.run(agent, message, session=session)
    print(result.final_output)
    print(f"({len(await session.get_items())} items in session {session_id!r})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], sys.argv[2]))
