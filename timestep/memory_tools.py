"""`Memory.as_tools()`: remember, recall and forget as Agents SDK function tools.

The tools are bound to one `Memory`, so to its scope: a model calling them can neither name
nor reach another scope. Bad input comes back to the model as the tool's text, so it can
correct itself; nothing is stored then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agents import FunctionTool, function_tool

from .errors import InvalidMemory, MemoryNotFound

if TYPE_CHECKING:
    from .memory import Memory

RECALL_LIMIT = 20  # the most facts one recall returns to the model


def memory_tools(memory: Memory) -> list[FunctionTool]:
    """The three tools of `memory`."""

    @function_tool(name_override="remember")
    async def remember(text: str, subject: str | None = None, tags: list[str] | None = None) -> str:
        """Remember a fact for later conversations.

        Args:
            text: The fact, in a sentence that makes sense on its own.
            subject: Who or what the fact is about, if anyone (e.g. a name).
            tags: Short labels to find the fact by later.
        """
        try:
            fact = await memory.remember(text, subject=subject, tags=tags)
        except InvalidMemory as exc:
            return f"not remembered: {exc}"
        return f"remembered as fact {fact.id}"

    @function_tool(name_override="recall")
    async def recall(query: str, limit: int = 5) -> str:
        """Recall remembered facts that match a question or keywords, best match first.

        Args:
            query: What to look for.
            limit: How many facts at most (up to 20).
        """
        try:
            facts = await memory.recall(query, limit=max(1, min(limit, RECALL_LIMIT)))
        except InvalidMemory as exc:
            return f"cannot recall: {exc}"
        if not facts:
            return "nothing remembered matches"
        return "\n".join(f"[fact {fact.id}] {fact.text}" + (f" (about {fact.subject})" if fact.subject else "") for fact in facts)

    @function_tool(name_override="forget")
    async def forget(fact_id: int) -> str:
        """Forget a remembered fact, by the number `recall` showed for it.

        Args:
            fact_id: The fact's number.
        """
        try:
            await memory.forget(fact_id)
        except MemoryNotFound as exc:
            return f"not forgotten: {exc}"
        return f"forgot fact {fact_id}"

    return [remember, recall, forget]
