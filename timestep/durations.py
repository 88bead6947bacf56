"""Durations given by users: a time to live in seconds or as a timedelta, checked once, here."""

from __future__ import annotations

import datetime as dt


def ttl_from(ttl: float | dt.timedelta | None) -> dt.timedelta | None:
    """A time to live as a positive timedelta, or None; anything else is a clear error."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float, dt.timedelta)):
        raise TypeError(f"ttl must be seconds (a number) or a timedelta, not {type(ttl).__name__}")
    value = ttl if isinstance(ttl, dt.timedelta) else dt.timedelta(seconds=ttl)
    if value <= dt.timedelta(0):
        raise ValueError(f"ttl must be positive, not {ttl!r}")
    return value
