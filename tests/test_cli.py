"""The `timestep` command, run as a user runs it, on both backends."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conftest import child_env, require_postgres
from timestep import open_store
from timestep.session import Session
from timestep.store import Store
from timestep.store.namespace import drop_namespace

pytestmark = pytest.mark.anyio


def timestep(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "timestep", *args]
    return subprocess.run(command, capture_output=True, text=True, env=child_env(), timeout=300)


@pytest.fixture(params=["pglite", "postgres"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, list[str]]]:
    """A store the test writes through, and the CLI options that reach the same database."""
    if request.param == "postgres":
        uri = require_postgres()
        store, options = await open_store(uri), ["--uri", uri]
    else:  # the CLI shares this process's running sidecar over its socket
        store, options = await open_store(pglite_path=tmp_path), ["--pglite-path", str(tmp_path)]
    yield store, options
    await store.aclose()


async def test_sql_prints_a_table(target: tuple[Store, list[str]]) -> None:
    _, options = target
    done = timestep("sql", *options, "SELECT 1 AS one, 'héllo' AS greeting, '{\"a\": [1]}'::jsonb AS doc, NULL AS nothing")
    assert done.returncode == 0, done.stderr
    header, rule, row, count = done.stdout.splitlines()
    assert [cell.strip() for cell in header.split(" | ")] == ["one", "greeting", "doc", "nothing"]
    assert set(rule) <= {"-", "+"}
    assert [cell.strip() for cell in row.split(" | ")] == ["1", "héllo", '{"a": [1]}', "NULL"]
    assert count == "(1 row)"


async def test_sql_json_and_csv(target: tuple[Store, list[str]]) -> None:
    _, options = target
    statement = (
        "SELECT 1 AS one, 'a|b,c\"d' AS text, NULL AS nothing, true AS yes, '{\"x\": [1]}'::jsonb AS doc, "
        "'2026-01-02 03:04:05+00'::timestamptz AS at, '\\x00ff'::bytea AS raw, 1.50::numeric AS num"
    )
    as_json = timestep("sql", *options, "--json", statement)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == [{
        "one": 1, "text": 'a|b,c"d', "nothing": None, "yes": True, "doc": {"x": [1]},
        "at": "2026-01-02T03:04:05+00:00", "raw": "\\x00ff", "num": "1.50",
    }]
    as_csv = timestep("sql", *options, "--csv", statement)
    assert as_csv.returncode == 0, as_csv.stderr
    assert list(csv.reader(io.StringIO(as_csv.stdout))) == [
        ["one", "text", "nothing", "yes", "doc", "at", "raw", "num"],
        ["1", 'a|b,c"d', "", "true", '{"x": [1]}', "2026-01-02T03:04:05+00:00", "\\x00ff", "1.50"],
    ]
    empty = timestep("sql", *options, "--json", "SELECT 1 AS one WHERE false")
    assert json.loads(empty.stdout) == []
    both = timestep("sql", *options, "--json", "--csv", "SELECT 1")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


async def test_sql_reports_affected_rows(target: tuple[Store, list[str]]) -> None:
    store, options = target
    table = f"cli_{os.getpid()}_{id(store)}"
    assert timestep("sql", *options, f"CREATE TABLE {table} (v int)").returncode == 0
    done = timestep("sql", *options, f"INSERT INTO {table} SELECT generate_series(1, 3)")
    assert done.stdout.strip() == "OK, 3 rows affected"
    assert await store.fetchval(f"SELECT count(*) FROM {table}") == 3
    await store.execute(f"DROP TABLE {table}")


async def test_bad_sql_is_one_clear_line(target: tuple[Store, list[str]]) -> None:
    _, options = target
    done = timestep("sql", *options, "SELEC 1")
    assert done.returncode == 1
    assert done.stderr.strip() == 'timestep: [42601] syntax error at or near "SELEC"'
    assert done.stdout == ""


async def test_sessions_list_show_delete(target: tuple[Store, list[str]]) -> None:
    store, options = target
    session = Session(store=store)
    await session.add_items([{"role": "user", "content": "hello 😀"}, {"type": "function_call", "call_id": "c1", "name": "wire_money", "arguments": "{\"amount\": 5}"}])

    listed = timestep("sessions", "list", *options)
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith(session.session_id))
    assert line.split(" | ")[1].strip() == "2"

    shown = timestep("sessions", "show", *options, session.session_id)
    assert shown.returncode == 0, shown.stderr
    assert f"session {session.session_id}: 2 items" in shown.stdout
    assert "[1] message role=user" in shown.stdout and '"content": "hello 😀"' in shown.stdout
    assert "[2] function_call name=wire_money" in shown.stdout

    deleted = timestep("sessions", "delete", *options, session.session_id)
    assert deleted.returncode == 0 and deleted.stdout.strip() == f"deleted session {session.session_id}"
    assert await session.get_items() == []
    for action in ("show", "delete"):
        missing = timestep("sessions", action, *options, session.session_id)
        assert missing.returncode == 1
        assert missing.stderr.strip() == f"timestep: no session {session.session_id!r}; `timestep sessions list` shows the stored ones"


def test_usage_errors_exit_non_zero() -> None:
    done = timestep("sessions")
    assert done.returncode == 2 and "usage" in done.stderr


async def test_runs_list_show_approve_reject_resume(target: tuple[Store, list[str]]) -> None:
    import banker
    from timestep.run_state import RunStateStore
    from timestep.runner import run_agent
    from timestep.testing import FakeModelServer, calls, text

    store, options = target
    script = [calls(("wire_money", {"amount": 5}), ("close_account", {"account": "main"})), text("Sent 5; main stays open.")]
    with FakeModelServer(script) as server:
        agent = banker.make_agent(server.base_url)
        session = Session(store=store)
        result = await run_agent(agent, "send 5 and close main", session)
        await RunStateStore(agent, session.session_id, store=store).save(result.to_state())
        run_id = session.session_id

        listed = timestep("runs", "list", *options)
        line = next(line for line in listed.stdout.splitlines() if line.startswith(run_id))
        assert [cell.strip() for cell in line.split(" | ")][1:5] == ["banker", "interrupted", "2", "python"]

        shown = timestep("runs", "show", *options, run_id)
        assert shown.returncode == 0, shown.stderr
        assert "2 tool calls waiting for approval" in shown.stdout
        assert "call_1_0: wire_money  [undecided]" in shown.stdout and '"amount": 5' in shown.stdout
        assert "call_1_1: close_account  [undecided]" in shown.stdout

        assert timestep("runs", "approve", *options, run_id, "--call", "call_1_0").returncode == 0
        rejected = timestep("runs", "reject", *options, run_id, "--call", "call_1_1", "--message", "Not today.")
        assert rejected.stdout.startswith("rejected call_1_1")
        assert "[rejected (Not today.)]" in timestep("runs", "show", *options, run_id).stdout

        missing = timestep("runs", "approve", *options, run_id, "--call", "call_9")
        assert missing.returncode == 1 and "pending: call_1_0, call_1_1" in missing.stderr

        resumed = resume(options, run_id, server)
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.strip() == f"run {run_id} finished: Sent 5; main stays open."
        second = server.requests[1].text()
        assert "sent 5" in second and "Not today." in second and "closed main" not in second

        # The run is finished: nothing more can be decided or resumed, and nothing runs again.
        assert timestep("runs", "show", *options, run_id).stdout.strip() == f"run {run_id}: finished, output: Sent 5; main stays open."
        again = timestep("runs", "approve", *options, run_id)
        assert again.returncode == 1 and again.stderr.count("\n") == 1 and "is finished" in again.stderr
        again = resume(options, run_id, server)
        assert again.returncode == 1 and again.stderr.count("\n") == 1 and "is finished" in again.stderr

        # Several runs in one command: each is decided on its own, and one that cannot be
        # (finished) is one line on stderr and exit 1, the others decided all the same.
        other = f"{run_id}-other"
        await RunStateStore(agent, other, store=store).save(result.to_state())
        both = timestep("runs", "approve", *options, run_id, other)
        assert both.returncode == 1 and both.stderr.count("\n") == 1 and "is finished" in both.stderr
        assert both.stdout.startswith(f"approved call_1_0, call_1_1 in run {other};")
        assert "call_1_1: close_account  [approved]" in timestep("runs", "show", *options, other).stdout
        one_call = timestep("runs", "reject", *options, run_id, other, "--call", "call_1_0")
        assert one_call.returncode == 1 and one_call.stderr == "timestep: --call names a call of one run: give one run id with it\n"
        assert len(server.requests) == 2
    assert [r.status for r in await RunStateStore.list_runs(store) if r.run_id == run_id] == ["finished"]


async def test_the_readme_durable_run_then_the_operator_runs_nothing_twice(target: tuple[Store, list[str]]) -> None:
    """The README's durable run, finished; then an operator looks at it and tries again."""
    import banker
    from timestep.run_state import RunStateStore
    from timestep.runner import run_agent
    from timestep.testing import FakeModelServer, call, text

    store, options = target
    banker.executed.clear()
    with FakeModelServer([call("wire_money", {"amount": 5}), text("Sent 5.")]) as server:
        agent = banker.make_agent(server.base_url)
        session = Session(store=store)
        runs = RunStateStore(agent=agent, session_id=session.session_id, store=store)
        result = await run_agent(agent, "send 5", session, run_store=runs)
        assert result.interruptions
        state = await runs.load()
        for item in state.get_interruptions():
            state.approve(item)
        result = await run_agent(agent, state, session, run_store=runs)
        assert result.final_output == "Sent 5."
        run_id = session.session_id

        listed = timestep("runs", "list", *options)
        line = next(line for line in listed.stdout.splitlines() if line.startswith(run_id))
        assert [cell.strip() for cell in line.split(" | ")][2:4] == ["finished", "0"] and "output: Sent 5." in line
        assert timestep("runs", "show", *options, run_id).stdout.strip() == f"run {run_id}: finished, output: Sent 5."
        for attempt in (timestep("runs", "approve", *options, run_id), resume(options, run_id, server)):
            assert attempt.returncode == 1 and attempt.stderr.count("\n") == 1 and "is finished" in attempt.stderr
        assert len(server.requests) == 2
    assert banker.executed == ["wire_money 5.0"]
    outputs = [item for item in await session.get_items() if item.get("type") == "function_call_output"]
    assert len(outputs) == 1


def resume(options: list[str], run_id: str, server: Any) -> subprocess.CompletedProcess[str]:
    """`timestep runs resume RUN --agent banker:make_agent`, against the fake model `server`."""
    import banker

    return subprocess.run(
        [sys.executable, "-m", "timestep", "runs", "resume", *options, run_id, "--agent", "banker:make_agent"],
        capture_output=True, text=True, timeout=300,
        env=child_env(FAKE_MODEL_URL=server.base_url, PYTHONPATH=str(Path(banker.__file__).parent) + os.pathsep + child_env()["PYTHONPATH"]),
    )


def test_runs_errors_are_one_line() -> None:
    done = timestep("runs", "show", "--uri", "memory://", "no-such-run")
    assert done.returncode == 1
    assert done.stderr.strip() == "timestep: no saved state for run 'no-such-run'; `timestep runs list` shows the saved runs"
    bad_agent = timestep("runs", "resume", "--uri", "memory://", "x", "--agent", "nodots")
    assert bad_agent.returncode == 1 and "module:attribute" in bad_agent.stderr


def test_doctor_says_how_durable_writes_are(tmp_path: Path) -> None:
    done = timestep("doctor", "--pglite-path", str(tmp_path / "db"))
    assert done.returncode == 0, done.stderr
    assert "durability   durable (a write is answered once it would survive an OS crash or power loss)" in done.stdout
    import platform
    from importlib.metadata import version

    assert f"python       {platform.python_version()} " in done.stdout
    assert f"agents sdk   openai-agents {version('openai-agents')}" in done.stdout
    assert "sidecar      pid " in done.stdout and ", Node v" in done.stdout and ", PGlite 0." in done.stdout
    assert f"cache dir    {os.environ['TIMESTEP_CACHE_DIR']}" in done.stdout
    assert "data dir     " in done.stdout
    relaxed = subprocess.run(
        [sys.executable, "-m", "timestep", "doctor", "--pglite-path", str(tmp_path / "db")],
        capture_output=True, text=True, env=child_env(TIMESTEP_DURABILITY="relaxed"), timeout=300,
    )
    assert relaxed.returncode == 0, relaxed.stderr
    assert "durability   relaxed" in relaxed.stdout
    wrong = subprocess.run(
        [sys.executable, "-m", "timestep", "doctor", "--pglite-path", str(tmp_path / "db")],
        capture_output=True, text=True, env=child_env(TIMESTEP_DURABILITY="sometimes"), timeout=300,
    )
    assert wrong.returncode == 1
    assert wrong.stderr.strip().splitlines() == ["timestep: TIMESTEP_DURABILITY='sometimes': use 'durable' (the default) or 'relaxed'"]


@pytest.mark.parametrize("position", ["before the command", "after the command"])
async def test_store_options_are_honoured_before_or_after_the_command(
    target: tuple[Store, list[str]], position: str
) -> None:
    """`timestep --namespace ns sessions delete dup` deletes ns's session, not the default
    namespace's; --uri and --pglite-path reach the same database in either place."""
    store, options = target
    namespace = f"cli_position_{os.getpid()}_{position.split()[0]}"
    if options[0] == "--uri":
        namespaced = await open_store(options[1], namespace=namespace)
    else:
        namespaced = await open_store(pglite_path=options[1], namespace=namespace)
    outside, inside = Session("dup", store=store), Session("dup", store=namespaced)
    for session in (outside, inside):
        await session.add_items([{"role": "user", "content": "kept?"}])

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        chosen = [*options, "--namespace", namespace]
        split = len(command) - 1 if command[0] == "sessions" else 1
        if position == "before the command":
            return timestep(*chosen, *command)
        return timestep(*command[:split], *chosen, *command[split:])

    done = run("sessions", "delete", "dup")
    assert done.returncode == 0, done.stderr
    assert await inside.get_items() == []
    assert await outside.get_items() == [{"role": "user", "content": "kept?"}]
    doctor = run("doctor")
    assert doctor.returncode == 0, doctor.stderr
    where = options[1] if options[0] == "--pglite-path" else "127.0.0.1"
    assert where in doctor.stdout
    await outside.clear_session()
    await drop_namespace(store, namespace)
    await namespaced.aclose()


def test_an_agent_is_imported_from_the_current_directory(tmp_path: Path) -> None:
    """`--agent myagents:agent` finds myagents.py in the current directory, as `python -m` would."""
    (tmp_path / "myagents.py").write_text("from agents import Agent\nagent = Agent(name='mine')\n")
    console_script = Path(sys.executable).parent / "timestep"
    env = child_env()
    # No empty entry, which would put the current directory on the path by itself.
    env["PYTHONPATH"] = os.pathsep.join(entry for entry in env["PYTHONPATH"].split(os.pathsep) if entry)
    done = subprocess.run(
        [str(console_script), "runs", "resume", "--uri", "memory://", "no-such-run", "--agent", "myagents:agent"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "run 'no-such-run' has no saved state" in done.stderr, done.stderr  # got past the import


def test_ctrl_c_is_one_line_and_exit_130() -> None:
    uri = require_postgres()
    tag = f"timestep-ctrl-c-{os.getpid()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "timestep", "sql", "--uri", f"{uri}{'&' if '?' in uri else '?'}application_name={tag}",
         "SELECT pg_sleep(60)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
        # Ctrl-C as a terminal delivers it: a suite started in the background by a script
        # inherits SIGINT ignored (POSIX, for asynchronous lists) and would pass that on.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        with psycopg.connect(uri, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while not conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND query LIKE '%%pg_sleep%%'", [tag]
            ).fetchone():
                assert time.monotonic() < deadline, "the query never started"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert stderr == "timestep: interrupted\n"


def test_a_file_for_a_directory_and_the_demo_in_memory_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    doctor = timestep("doctor", "--pglite-path", str(tmp_path / "a-file"))
    assert doctor.returncode == 1 and doctor.stderr.count("\n") == 1 and "is a file, not a directory" in doctor.stderr
    demo = timestep("demo", "--uri", "memory://")
    assert demo.returncode == 1 and demo.stderr.count("\n") == 1
    assert "memory://) lives in one process only" in demo.stderr


def test_every_command_and_argument_has_help() -> None:
    import argparse

    from timestep.cli import _parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                for name, sub in action.choices.items():
                    if not helps.get(name):
                        missing.append(f"{path} {name}")
                    walk(sub, f"{path} {name}")
            elif not action.help and action.dest != "help":
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(_parser(), "timestep")
    assert missing == []


async def test_the_operators_run_commands_do_not_import_the_agents_sdk(tmp_path: Path) -> None:
    """`runs list/show/approve/reject` read and write rows: no Agents SDK import (seconds)."""
    import banker
    from timestep.run_state import RunStateStore
    from timestep.runner import run_agent
    from timestep.testing import FakeModelServer, call

    async with await open_store(pglite_path=tmp_path) as store:
        with FakeModelServer([call("wire_money", {"amount": 5})]) as server:
            agent = banker.make_agent(server.base_url)
            run_id = "operator-run"
            await run_agent(agent, "send 5", None, run_store=RunStateStore(agent, run_id, store=store))
        script = (
            "import sys\nfrom timestep.cli import main\n"
            f"for command in (['runs', 'list'], ['runs', 'show', {run_id!r}], ['runs', 'approve', {run_id!r}]):\n"
            f"    assert main([*command, '--pglite-path', {str(tmp_path)!r}]) == 0\n"
            "print(sorted(name for name in sys.modules if name == 'agents' or name.startswith('agents.')))\n"
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=child_env(), timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == "[]"
        assert "approved call_1_0 in run operator-run" in done.stdout
