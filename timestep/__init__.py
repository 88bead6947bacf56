"""timestep: durable OpenAI Agents for Python, stored in PostgreSQL or embedded PGlite."""

from __future__ import annotations

from .store import Store, open_store

__all__ = ["Store", "open_store"]
__version__ = "0.1.0"
