"""timestep: durable OpenAI Agents for Python, stored in PostgreSQL or embedded PGlite."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .store import Store, open_store

if TYPE_CHECKING:
    from .advanced_session import AdvancedSession
    from .journal import tool_call_key
    from .models import MultiModelProvider, MultiModelProviderMap
    from .run_state import RunStateStore
    from .runner import consume_result, run_agent
    from .session import Session

__all__ = [
    "AdvancedSession",
    "MultiModelProvider",
    "MultiModelProviderMap",
    "RunStateStore",
    "Session",
    "Store",
    "consume_result",
    "open_store",
    "run_agent",
    "tool_call_key",
]
__version__ = "0.1.0"

# Names whose modules import the Agents SDK (~2-3 s) load on first use, so `import timestep`
# and the `timestep` command stay quick when they are not needed.
_LAZY = {
    "AdvancedSession": "timestep.advanced_session",
    "MultiModelProvider": "timestep.models",
    "MultiModelProviderMap": "timestep.models",
    "RunStateStore": "timestep.run_state",
    "Session": "timestep.session",
    "consume_result": "timestep.runner",
    "run_agent": "timestep.runner",
    "tool_call_key": "timestep.journal",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'timestep' has no attribute {name!r}")
