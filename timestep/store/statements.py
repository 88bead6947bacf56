"""Which statements a Store call may run, the same on both backends.

Each `query` and `execute_batch` statement is one statement (the extended protocol takes one at
a time), so its first keyword says what it is. A Store call is its own transaction and leaves
the connection as it found it: PGlite's one PostgreSQL session is shared by every client of a
directory, and PostgreSQL's pooled connections are reused by other calls. So transaction
control, and commands whose point is to outlast the call, are refused before anything is sent;
so is SET outside a batch (SET LOCAL inside one is fine). On PGlite the sidecar enforces the
same rules for every client (sidecar/isolation.mjs, which words its refusals the same way);
here they give PostgreSQL the same behaviour.
"""

from __future__ import annotations

import re

from ..errors import StatementRefused

_TRANSACTION_CONTROL = frozenset({"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE"})
_OUTLASTS_CALL = frozenset({"LISTEN", "UNLISTEN", "DECLARE", "PREPARE", "LOAD", "DISCARD"})
_SKIPPED = re.compile(r"(?:\s+|\(|--[^\n]*(?:\n|$))+")
_WORD = re.compile(r"[A-Za-z_]+")


def first_keyword(sql: str) -> str:
    """The statement's first keyword, upper-cased, past whitespace, comments and parentheses."""
    at = 0
    while at < len(sql):
        skipped = _SKIPPED.match(sql, at)
        if skipped:
            at = skipped.end()
        elif sql.startswith("/*", at):
            depth = 0  # PostgreSQL's block comments nest
            while at < len(sql):
                if sql.startswith("/*", at):
                    depth, at = depth + 1, at + 2
                elif sql.startswith("*/", at):
                    depth, at = depth - 1, at + 2
                    if depth == 0:
                        break
                else:
                    at += 1
        else:
            break
    word = _WORD.match(sql, at)
    return word.group(0).upper() if word else ""


def refusal(sql: str, *, in_batch: bool) -> str | None:
    """Why this statement may not run in a `query` (or, `in_batch`, an `execute_batch`), or None."""
    keyword = first_keyword(sql)
    if keyword in _TRANSACTION_CONTROL or (keyword == "PREPARE" and re.match(r"\s*PREPARE\s+TRANSACTION\b", sql, re.I)):
        return (
            f"{keyword} refused: a Store call is a transaction of its own. Run statements that "
            "belong together with execute_batch (all or nothing)"
        )
    if keyword in _OUTLASTS_CALL:
        return (
            f"{keyword} refused: it would leave state behind in a session other calls share "
            "(PGlite's one session, a pooled PostgreSQL connection)"
        )
    if not in_batch and keyword in ("SET", "RESET"):
        return (
            f"{keyword} refused outside execute_batch: a session setting would outlast the call. Use "
            "SET LOCAL (or set_config(name, value, true)) inside execute_batch, for that transaction"
        )
    return None


def check_statement(sql: str) -> None:
    """Raise `StatementRefused` if `sql` may not run as a `query`."""
    refused = refusal(sql, in_batch=False)
    if refused:
        raise StatementRefused(refused)


def check_batch(sqls: list[str]) -> None:
    """Raise `StatementRefused` (with the statement's index) if one may not run in a batch."""
    for index, sql in enumerate(sqls):
        refused = refusal(sql, in_batch=True)
        if refused:
            raise StatementRefused(refused, statement_index=index)
