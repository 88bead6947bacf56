"""Durations given by users: a time to live in seconds or as a timedelta, or a command line's
"7d", checked once, here."""

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


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_from_text(text: str) -> dt.timedelta:
    """A command line's duration: a number with a unit (`90s`, `30m`, `12h`, `7d`, `2w`) or
    plain seconds; not negative."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:], None) if value else None
    number = value[:-1] if unit is not None else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration: give a number and a unit, such as 90s, 30m, 12h, 7d or 2w") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"{text!r} is not a duration: it must be a finite time, zero or more")
    return dt.timedelta(seconds=seconds)
