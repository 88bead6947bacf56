"""The process-wide store used when none is given: opened on first use, then shared."""

from __future__ import annotations

import threading

from . import open_store
from .base import Store

_default: Store | None = None
_lock = threading.Lock()


async def default_store() -> Store:
    """PG_CONNECTION_URI's PostgreSQL, else PGlite in the default directory; one per process.

    Safe to call from any event loop and from several at once: concurrent first calls may each
    open a store, and all but one close theirs again.
    """
    global _default
    current = _default
    if current is not None and not current.closed:
        return current
    opened = await open_store()
    with _lock:
        if _default is None or _default.closed:
            _default = opened
            return opened
        winner = _default
    await opened.aclose()
    return winner


async def store_or_default(store: Store | None) -> Store:
    """`store` if one was given, else the process-wide default store."""
    return store if store is not None else await default_store()
