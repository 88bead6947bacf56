"""The examples' agent: a banker whose one tool, `wire_money`, waits for a human's approval.

Its model is OpenAI's `gpt-4.1` (set `OPENAI_API_KEY`); the tests point `OPENAI_BASE_URL` at
timestep's fake model server instead.
"""

from agents import Agent, function_tool


@function_tool(needs_approval=True)
def wire_money(amount: float) -> str:
    """Send money."""
    return f"sent {amount}"


banker = Agent(name="banker", instructions="Help with payments.", model="gpt-4.1", tools=[wire_money])
