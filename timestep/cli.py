"""The `timestep` command: demo, doctor, serve, sql, sessions, runs, worker, memory, namespaces.

Every command takes `--uri` / `--pglite-path` (default: PG_CONNECTION_URI, else PGlite in the
default directory). Errors print one line to stderr and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from . import __version__, run_records
from .durations import duration_from_text
from .errors import TimestepError
from .store import MEMORY_URI, Store, open_store
from .store.pglite import PGliteStore
from .store.schema import current_version

CELL_WIDTH = 60


def _cell(value: Any) -> str:
    """One value as the table shows it."""
    if value is None:
        return "NULL"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        text = _as_json(value)
    elif isinstance(value, dt.datetime):
        text = value.isoformat(sep=" ")
    else:
        text = str(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 1] + "…"


def _as_json(value: Any) -> Any:
    """A value JSON has no type for, as `sql --json` writes it: bytea as \\x hex text, times
    in ISO 8601, numerics and everything else as their text."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, (dt.date, dt.time)):  # datetimes too
        return value.isoformat()
    return str(value)


def _csv_cell(value: Any) -> Any:
    """One value as `sql --csv` writes it: NULL as an empty field, booleans as true/false,
    JSON documents as JSON text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (bytes, bytearray, memoryview, dt.date, dt.time)):
        return _as_json(value)
    return value


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Rows as an aligned text table, with a row count."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(column), *(len(row[i]) for row in cells)]) for i, column in enumerate(columns)]
    print(" | ".join(column.ljust(width) for column, width in zip(columns, widths)).rstrip())
    print("-+-".join("-" * width for width in widths))
    for row in cells:
        print(" | ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip())
    print(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")


async def _doctor(store: Store, args: argparse.Namespace) -> int:
    import platform
    from importlib.metadata import version

    from .store.datadir import cache_dir, default_pglite_dir

    _line("timestep", __version__)
    _line("python", f"{platform.python_version()} ({sys.executable})")
    _line("agents sdk", f"openai-agents {version('openai-agents')}")
    _line("backend", store.backend)
    _line("location", store.location)
    if isinstance(store, PGliteStore) and store.sidecar.link is not None:
        ready = store.sidecar.link.ready
        _line("sidecar", f"pid {ready.pid}, Node {ready.node}, PGlite {ready.pglite}")
    _line("data dir", f"{default_pglite_dir()} (the embedded default)")
    _line("cache dir", cache_dir())
    _line("server", await store.fetchval("SELECT version()"))
    _line("schema", f"version {await current_version(store)}")
    _line("durability", _DURABILITY[store.durability])
    _line("opened in", f"{args.opened_in * 1000:.0f} ms")
    _line("round trip", f"{await _round_trip_ms(store):.3f} ms (median of 200 x SELECT 1)")
    return 0


_DURABILITY = {
    "durable": "durable (a write is answered once it would survive an OS crash or power loss)",
    "relaxed": "relaxed (a killed process loses nothing; an OS crash may lose the last writes)",
    "none": "none (in memory: nothing outlasts the process)",
}


async def _round_trip_ms(store: Store) -> float:
    times = []
    for _ in range(200):
        begin = time.perf_counter()
        await store.fetchval("SELECT 1")
        times.append(time.perf_counter() - begin)
    return statistics.median(times) * 1000


def _line(label: str, value: object) -> None:
    print(f"{label:<12} {value}")


async def _sql(store: Store, args: argparse.Namespace) -> int:
    result = await store.query(args.statement)
    done = f"OK, {result.affected} row{'' if result.affected == 1 else 's'} affected"
    if args.format == "json":
        rows = [dict(zip(result.columns, row)) for row in result.rows]
        print(json.dumps(rows if result.columns else {"affected": result.affected}, ensure_ascii=False, default=_as_json))
    elif args.format == "csv":
        if result.columns:
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(result.columns)
            writer.writerows([_csv_cell(value) for value in row] for row in result.rows)
        else:
            print(done, file=sys.stderr)
    elif result.columns:
        print_table(result.columns, result.rows)
    else:
        print(done)
    return 0


# The session commands import Session (and with it the Agents SDK, ~2-3 s) when they run,
# so `timestep sql` and `timestep doctor` start quickly.


async def _sessions_list(store: Store, args: argparse.Namespace) -> int:
    from .session import Session

    infos = await Session.list_sessions(store, limit=args.limit)
    print_table(
        ["session_id", "items", "created_at", "last_active", "expires_at"],
        [(i.session_id, i.items, i.created_at, i.last_active, i.expires_at) for i in infos],
    )
    return 0


async def _sessions_show(store: Store, args: argparse.Namespace) -> int:
    if not await _session_exists(store, args.session_id):
        raise _Failure(f"no session {args.session_id!r}; `timestep sessions list` shows the stored ones")
    from .session import Session

    items = await Session(args.session_id, store=store).get_items()
    print(f"session {args.session_id}: {len(items)} item{'' if len(items) == 1 else 's'}")
    for number, item in enumerate(items, start=1):
        print(f"\n[{number}] {_describe(item)}")
        print(json.dumps(item, indent=2, ensure_ascii=False))
    return 0


def _describe(item: dict[str, Any]) -> str:
    kind = item.get("type") or "message"
    role = item.get("role")
    name = item.get("name")
    return " ".join(part for part in (kind, f"role={role}" if role else "", f"name={name}" if name else "") if part)


async def _sessions_delete(store: Store, args: argparse.Namespace) -> int:
    from .session import Session

    if not await Session.delete_session(args.session_id, store):
        raise _Failure(f"no session {args.session_id!r}; `timestep sessions list` shows the stored ones")
    print(f"deleted session {args.session_id}")
    return 0


async def _sessions_purge(store: Store, args: argparse.Namespace) -> int:
    from .session import Session

    purged = await Session.purge_expired(store)
    print(f"purged {purged} expired session{'' if purged == 1 else 's'}")
    return 0


async def _session_exists(store: Store, session_id: str) -> bool:
    return bool(await store.fetchval("SELECT count(*) FROM agent_sessions WHERE session_id = $1", session_id))


class _Failure(Exception):
    """A command could not do what was asked; the message says why."""


Command = Callable[[Store, argparse.Namespace], Awaitable[int]]


# `runs list/show/approve/reject` read and write rows (run_records) and start in a fraction of a
# second; `runs resume` and `worker` import the Agents SDK when they run.


async def _runs_list(store: Store, args: argparse.Namespace) -> int:
    runs = await run_records.list_runs(store, limit=args.limit)
    print_table(
        ["run_id", "agent", "status", "pending", "sdk", "saved_at", "detail"],
        [(r.run_id, r.agent_name, r.status, r.pending_approvals, r.sdk, r.saved_at, _run_detail(r, 60)) for r in runs],
    )
    return 0


def _run_detail(run: Any, width: int | None = None) -> str:
    """What a run's status says beyond its name: who holds it, its output, its error."""
    if run.status == "running":
        detail = f"held by {run.lease_owner} until {run.lease_expires_at}"
    elif run.status == "finished":
        output = run.final_output
        detail = "output: " + (output if isinstance(output, str) else json.dumps(output, ensure_ascii=False))
    elif run.status == "failed":
        detail = f"error: {run.error}"
    else:
        detail = ""
    return detail if width is None or len(detail) <= width else detail[: width - 1] + "…"


async def _runs_show(store: Store, args: argparse.Namespace) -> int:
    run = await run_records.find_run(args.run_id, store)
    if run.status not in ("interrupted", "failed"):
        print(f"run {args.run_id}: {run.status}, {_run_detail(run)}")
        return 0
    calls = await run_records.pending_calls(args.run_id, store)
    failed = f" (failed: {run.error}; it can be resumed again)" if run.status == "failed" else ""
    print(f"run {args.run_id}: {len(calls)} tool call{'' if len(calls) == 1 else 's'} waiting for approval{failed}")
    for call in calls:
        decision = "undecided"
        if call.decision is not None:
            decision = "approved" if call.decision.get("approved") else f"rejected ({call.decision.get('message') or 'no message'})"
        print(f"\n  {call.call_id}: {call.tool}  [{decision}]")
        arguments = call.arguments
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                pass
        print("  " + json.dumps(arguments, indent=2, ensure_ascii=False).replace("\n", "\n  "))
    return 0


async def _runs_decide(store: Store, args: argparse.Namespace) -> int:
    if args.call is not None and len(args.run_ids) > 1:
        raise _Failure("--call names a call of one run: give one run id with it")
    approve = args.action == "approve"
    verb = "approved" if approve else "rejected"
    failed = 0
    for run_id in args.run_ids:  # each run on its own: one that cannot be decided stops no other
        try:
            decided = await run_records.decide(
                run_id, approve=approve, call_id=args.call, message=getattr(args, "message", None), store=store
            )
        except TimestepError as exc:
            print(f"timestep: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{verb} {', '.join(decided)} in run {run_id}; `timestep runs resume {run_id} --agent ...` continues it")
    return 1 if failed else 0


async def _runs_resume(store: Store, args: argparse.Namespace) -> int:
    from .run_state import RunStateStore

    agent = _import_agent(args.agent)
    # Claimed before anything runs (a finished run, or one another process holds, is refused),
    # then run from its journal: a run whose process died does not do again what it did.
    result = await RunStateStore(agent, args.run_id, store=store).recover()
    if result.interruptions:
        names = ", ".join(f"{i.raw_item.call_id} ({i.raw_item.name})" for i in result.interruptions)
        print(f"run {args.run_id} paused again, waiting for approval of: {names}")
    else:
        print(f"run {args.run_id} finished: {result.final_output}")
    return 0


async def _runs_prune(store: Store, args: argparse.Namespace) -> int:
    pruned = await run_records.prune_journals(args.older_than, store)
    print(f"deleted {pruned} journal step{'' if pruned == 1 else 's'} of finished runs older than {args.older_than}")
    return 0


def _import_agent(spec: str) -> Any:
    """`package.module:attribute` -> the Agent it names."""
    import importlib

    from agents import Agent

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise _Failure(f"--agent takes module:attribute (e.g. myapp.agents:banker), not {spec!r}")
    if os.getcwd() not in sys.path:  # modules of the current directory, as `python -m` finds them
        sys.path.insert(0, os.getcwd())
    try:
        value = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise _Failure(f"cannot import the agent {spec!r}: {exc}") from exc
    if callable(value) and not isinstance(value, Agent):
        value = value()
    if not isinstance(value, Agent):
        raise _Failure(f"{spec!r} is a {type(value).__name__}, not an Agent")
    return value


async def _memory_list(store: Store, args: argparse.Namespace) -> int:
    from .memory import Memory

    facts = await Memory(store, scope=args.scope).list(subject=args.subject, limit=args.limit)
    _print_facts(facts, with_score=False)
    return 0


async def _memory_search(store: Store, args: argparse.Namespace) -> int:
    from .memory import Memory

    facts = await Memory(store, scope=args.scope).recall(args.text, subject=args.subject, limit=args.limit)
    _print_facts(facts, with_score=True)
    return 0


async def _memory_forget(store: Store, args: argparse.Namespace) -> int:
    from .memory import Memory

    await Memory(store, scope=args.scope).forget(args.id)
    print(f"forgot fact {args.id} in scope {args.scope}")
    return 0


def _print_facts(facts: Sequence[Any], *, with_score: bool) -> None:
    columns = ["id", "subject", "tags", "text", "updated_at", *(["score"] if with_score else [])]
    rows = [
        (f.id, f.subject, ",".join(f.tags), f.text, f.updated_at, *([round(f.score, 4)] if with_score else []))
        for f in facts
    ]
    print_table(columns, rows)


async def _namespaces_list(store: Store, args: argparse.Namespace) -> int:
    from .store.namespace import list_namespaces

    found = await list_namespaces(store)
    print_table(["namespace", "sessions", "runs"], [(n.name, n.sessions, n.runs) for n in found])
    return 0


async def _namespaces_drop(store: Store, args: argparse.Namespace) -> int:
    from .store.namespace import drop_namespace, namespace_info

    name = args.name
    info = await namespace_info(store, name)
    if info is None:
        raise _Failure(f"no namespace {name!r}; `timestep namespaces list` shows them")
    if not args.yes:
        print(f"drop namespace {name!r} with {info.sessions} sessions and {info.runs} runs? type its name to confirm: ", end="", flush=True)
        if sys.stdin.readline().strip() != name:
            raise _Failure(f"not confirmed: namespace {name!r} was not dropped")
    await drop_namespace(store, name)
    print(f"dropped namespace {name}")
    return 0


async def _serve(store: Store, args: argparse.Namespace) -> int:
    """Keep the embedded database open, so other processes (the JavaScript module, say) can
    reach it through the sidecar's socket, until interrupted."""
    import signal

    if not isinstance(store, PGliteStore) or store.sidecar.data_dir is None:
        raise _Failure("`timestep serve` shares an embedded PGlite directory; PostgreSQL and memory:// need no server from timestep")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"serving {store.location} on {store.sidecar.data_dir.published_socket()}; stop with Ctrl-C", flush=True)
    await stop.wait()
    return 0


async def _worker(store: Store, args: argparse.Namespace) -> int:
    """Resume ready durable runs until SIGTERM or Ctrl-C; then finish the runs in hand and exit 0."""
    import signal

    from .worker import Worker

    worker = Worker(
        _import_agent(args.agent), store=store, concurrency=args.concurrency,
        lease_seconds=args.lease, poll_seconds=args.poll, journal_retention=args.journal_retention,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    banner = f"worker {worker.owner} on {store.location}: resuming ready runs, {args.concurrency} at a time; stop with Ctrl-C"
    await worker.run(stop, ready=lambda: print(banner, flush=True))
    print(f"worker {worker.owner} stopped after {worker.finished} run{'' if worker.finished == 1 else 's'}", flush=True)
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from .demo import main as demo_main  # imports the Agents SDK

    if args.uri == MEMORY_URI:
        raise _Failure(
            "the demo resumes the run in a second process, and an in-memory database (memory://) "
            "lives in one process only: give a PGlite directory (--pglite-path DIR) or PostgreSQL (--uri postgresql://...)"
        )
    return await demo_main(args.uri, args.pglite_path, args.namespace)


def _duration(text: str) -> Any:
    """An argparse type: an age such as 7d (timestep.durations)."""
    try:
        return duration_from_text(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(kind: type[Any]) -> Any:
    """An argparse type: a number of `kind` above zero."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above zero: {text!r}")
        return value

    return parse


def _store_options(default: Any) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The options that name the store (`location`) and, with them, the namespace (`common`),
    each defaulting to `default`."""
    location = argparse.ArgumentParser(add_help=False)
    location.add_argument("--uri", default=default, help="postgresql://... or memory:// (default: PG_CONNECTION_URI, else PGlite)")
    location.add_argument("--pglite-path", default=default, help="PGlite directory (default: TIMESTEP_PGLITE_DIR, else the user data dir)")
    common = argparse.ArgumentParser(add_help=False, parents=[location])
    common.add_argument("--namespace", default=default, help="work in this namespace (default: TIMESTEP_NAMESPACE, else none)")
    return location, common


def _parser() -> argparse.ArgumentParser:
    # The store's options are taken before the command or after it. After it, an option not
    # given sets nothing (SUPPRESS): argparse would otherwise overwrite what was given before.
    _, top = _store_options(None)
    location, common = _store_options(argparse.SUPPRESS)

    parser = argparse.ArgumentParser(prog="timestep", description="Durable OpenAI Agents runs.", parents=[top])
    parser.add_argument("--version", action="version", version=f"timestep {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("demo", parents=[common], help="a run pauses for approval, is saved, and a second process finishes it").set_defaults(standalone=_demo)
    commands.add_parser("doctor", parents=[common], help="open the store and report what it runs on").set_defaults(run=_doctor)
    commands.add_parser("serve", parents=[common], help="keep the PGlite database open for other processes (e.g. Node) until Ctrl-C").set_defaults(run=_serve)
    sql = commands.add_parser("sql", parents=[common], help="run one SQL statement and print what it returns")
    sql.add_argument("statement", help="one SQL statement (quote it for the shell)")
    output = sql.add_mutually_exclusive_group()
    output.add_argument("--json", dest="format", action="store_const", const="json", help="rows as a JSON array of objects")
    output.add_argument("--csv", dest="format", action="store_const", const="csv", help="rows as CSV with a header line")
    sql.set_defaults(run=_sql)

    sessions = commands.add_parser("sessions", help="list, show or delete stored sessions").add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sessions.add_parser("list", parents=[common], help="sessions with item counts, most recently active first")
    listing.add_argument("--limit", type=int, default=None, help="at most this many (default: all)")
    listing.set_defaults(run=_sessions_list)
    show = sessions.add_parser("show", parents=[common], help="the items of one session")
    show.add_argument("session_id", help="the session's id (as `sessions list` shows it)")
    show.set_defaults(run=_sessions_show)
    delete = sessions.add_parser("delete", parents=[common], help="delete one session and its items")
    delete.add_argument("session_id", help="the session's id")
    delete.set_defaults(run=_sessions_delete)
    sessions.add_parser("purge", parents=[common], help="delete every expired session (those created with a ttl)").set_defaults(run=_sessions_purge)

    runs = commands.add_parser("runs", help="list, show, approve, reject, resume or prune saved runs").add_subparsers(dest="action", required=True, metavar="ACTION")
    run_list = runs.add_parser("list", parents=[common], help="runs with a saved state: status, pending approvals, saved at")
    run_list.add_argument("--limit", type=int, default=None, help="at most this many, newest first (default: all)")
    run_list.set_defaults(run=_runs_list)
    run_show = runs.add_parser("show", parents=[common], help="the tool calls a run waits on, with their arguments")
    run_show.add_argument("run_id", help="the run's id (as `runs list` shows it)")
    run_show.set_defaults(run=_runs_show)
    for action, text in (("approve", "approve pending tool calls of one run or several (all, or --call)"), ("reject", "reject pending tool calls of one run or several (all, or --call)")):
        decide = runs.add_parser(action, parents=[common], help=text)
        decide.add_argument("run_ids", nargs="+", metavar="run_id", help="the run's id (or several runs' ids)")
        decide.add_argument("--call", help="one call id of the one run given (default: every pending call)")
        if action == "reject":
            decide.add_argument("--message", help="what the model is told instead of the tool's output")
        decide.set_defaults(run=_runs_decide)
    run_resume = runs.add_parser("resume", parents=[common], help="take a run back (paused with decisions, failed, or left by a process that died) and run it from its journal to the next pause or the end")
    run_resume.add_argument("run_id", help="the run's id")
    run_resume.add_argument("--agent", required=True, help="module:attribute naming the Agent (or a function returning it)")
    run_resume.set_defaults(run=_runs_resume)
    run_prune = runs.add_parser("prune", parents=[common], help="delete the journals of finished runs older than a given age")
    run_prune.add_argument(
        "--older-than", type=_duration, required=True, metavar="AGE",
        help="an age such as 90s, 30m, 12h, 7d or 2w: journal steps older than this are deleted",
    )
    run_prune.set_defaults(run=_runs_prune)

    worker = commands.add_parser(
        "worker", parents=[common],
        help="resume every durable run whose pending calls are all decided, or whose process died, until stopped",
    )
    worker.add_argument("--agent", required=True, help="module:attribute naming the Agent (or a function returning it)")
    worker.add_argument("--concurrency", type=_positive(int), default=4, help="runs at a time (default 4)")
    worker.add_argument("--lease", type=_positive(float), default=60.0, help="seconds a run is held without renewal (default 60)")
    worker.add_argument("--poll", type=_positive(float), default=1.0, help="seconds between looks for ready runs (default 1)")
    worker.add_argument(
        "--journal-retention", type=_duration, default=None, metavar="AGE",
        help="prune the journals of finished runs older than this (90s, 30m, 12h, 7d, 2w) as it goes, hourly (default: keep them)",
    )
    worker.set_defaults(run=_worker)

    memory = commands.add_parser("memory", help="list, search or forget remembered facts").add_subparsers(dest="action", required=True, metavar="ACTION")
    scoped = argparse.ArgumentParser(add_help=False, parents=[common])
    scoped.add_argument("--scope", default="global", help="global (default), user:<id> or agent:<name>")
    memory_list = memory.add_parser("list", parents=[scoped], help="facts of a scope, most recently updated first")
    memory_list.add_argument("--subject", help="only facts about this subject")
    memory_list.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    memory_list.set_defaults(run=_memory_list)
    search = memory.add_parser("search", parents=[scoped], help="facts matching TEXT, best first (full-text search)")
    search.add_argument("text", help="words to look for")
    search.add_argument("--subject", help="only facts about this subject")
    search.add_argument("--limit", type=int, default=10, help="at most this many (default 10)")
    search.set_defaults(run=_memory_search)
    forget = memory.add_parser("forget", parents=[scoped], help="delete one fact by id")
    forget.add_argument("id", type=int, help="the fact's id (as `memory list` shows it)")
    forget.set_defaults(run=_memory_forget)

    namespaces = commands.add_parser("namespaces", help="list or drop namespaces").add_subparsers(dest="action", required=True, metavar="ACTION")
    namespaces.add_parser("list", parents=[location], help="namespaces with their session and run counts").set_defaults(run=_namespaces_list, namespace=None)
    drop = namespaces.add_parser("drop", parents=[location], help="drop a namespace and everything in it (asks first)")
    drop.add_argument("name", help="the namespace's name")
    drop.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    drop.set_defaults(run=_namespaces_drop, namespace=None)
    return parser


async def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    async with await open_store(args.uri, pglite_path=args.pglite_path, namespace=args.namespace) as store:
        args.opened_in = time.perf_counter() - started
        command: Command = args.run
        return await command(store, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `timestep` console script."""
    args = _parser().parse_args(argv)
    try:
        if hasattr(args, "standalone"):  # opens (and closes) the store itself
            return asyncio.run(args.standalone(args))
        return asyncio.run(_run(args))
    except (TimestepError, _Failure) as exc:
        print(f"timestep: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("timestep: interrupted", file=sys.stderr)
        return 130  # 128 + SIGINT, as shells report it


if __name__ == "__main__":
    sys.exit(main())
