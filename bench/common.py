"""What the bench scripts share."""

from __future__ import annotations

import os
from collections.abc import Sequence

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_uri() -> str | None:
    """PG_CONNECTION_URI, else the machine's local server if it answers, else None."""
    uri = os.environ.get("PG_CONNECTION_URI")
    if uri:
        return uri
    try:
        import psycopg

        psycopg.connect(LOCAL_PG, connect_timeout=3).close()
        return LOCAL_PG
    except Exception:
        return None


def print_columns(rows: Sequence[Sequence[object]]) -> None:
    """Rows (the first one a header) as left-aligned columns."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
