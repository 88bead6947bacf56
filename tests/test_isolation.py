"""One client cannot break another's session.

PGlite has one PostgreSQL session, shared by every process using a directory. A second process
that runs BEGIN, SET, LISTEN, a temp table, set_config() ... through the CLI or through Store
must not change what the first one reads or writes, nor make opens fail. PostgreSQL gets the
same rules, so Store behaves the same on both backends.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import child_env
from timestep import open_store
from timestep.errors import StatementRefused, TransactionLeftOpen
from timestep.store import Store

pytestmark = pytest.mark.anyio

# Refused before they run, by the first keyword (query: one statement).
REFUSED = [
    "BEGIN",
    "start transaction",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT s",
    "/* a comment */ BEGIN",
    'SET search_path TO "timestep_ns_ns-a", pg_temp',
    "SET default_transaction_read_only = on",
    "SET SESSION AUTHORIZATION intruder",
    "SET ROLE intruder",
    "RESET ALL",
    "LISTEN channel",
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    "PREPARE p AS SELECT 1",
    "DISCARD ALL",
]
# Allowed, and undone before the next request (or harmless: pg_temp is searched last).
UNDONE = [
    "SELECT set_config('search_path', '\"timestep_ns_ns-a\"', false)",
    "SELECT set_config('default_transaction_read_only', 'on', false)",
    "SELECT set_config('statement_timeout', '1', false)",
    "CREATE TEMP TABLE kept (n int)",
]
SCRIPTS_LEFT_OPEN = ["BEGIN; INSERT INTO kept VALUES (-1)", "INSERT INTO kept VALUES (-1); BEGIN; SELECT 1"]
SCRIPT_UNDONE = (
    'SET search_path TO "timestep_ns_ns-a", pg_temp; SET default_transaction_read_only = on; '
    "LISTEN channel; CREATE TEMP TABLE kept (n int); SET ROLE intruder; PREPARE p AS SELECT 1; "
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1"
)

OWNER = """
import asyncio, json, sys
from timestep import open_store

async def main(path):
    default = await open_store(pglite_path=path)
    other = await open_store(pglite_path=path, namespace="ns-a")
    for store in (default, other):
        await store.execute("CREATE TABLE IF NOT EXISTS kept (n int)")
    await default.execute("DO $$ BEGIN CREATE ROLE intruder; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    print("ready", flush=True)
    written = 0
    for line in sys.stdin:
        command = line.split()
        if command[0] == "write":
            written += 1
            await default.execute("INSERT INTO kept VALUES ($1)", written)
            await other.execute("INSERT INTO kept VALUES ($1)", -written)
            print("written", written, flush=True)
        elif command[0] == "state":
            state = await default.fetchrow(
                "SELECT current_setting('search_path') AS search_path, "
                "current_setting('default_transaction_read_only') AS read_only, "
                "current_setting('statement_timeout') AS timeout, current_user AS role, "
                "(SELECT count(*) FROM pg_listening_channels()) AS listening, "
                "(SELECT count(*) FROM pg_cursors WHERE name <> '') AS cursors, "
                "(SELECT count(*) FROM pg_prepared_statements WHERE from_sql) AS prepared"
            )
            print(json.dumps(state), flush=True)
    await default.aclose()
    await other.aclose()

asyncio.run(main(sys.argv[1]))
"""

CLEAN = {"search_path": "public, pg_temp", "read_only": "off", "timeout": "0", "role": "postgres", "listening": 0, "cursors": 0, "prepared": 0}


class Owner:
    """A process that keeps a directory open and writes to it, in two namespaces, when told."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(OWNER), str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
        )
        assert self._line() == "ready"
        self.written = 0

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line:
            assert self.process.stderr is not None
            pytest.fail(f"the owner died: {self.process.stderr.read()}")
        return line

    def _tell(self, command: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._line()

    def write(self) -> None:
        self.written += 1
        assert self._tell("write") == f"written {self.written}"

    def state(self) -> dict[str, object]:
        return json.loads(self._tell("state"))  # type: ignore[no-any-return]

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(timeout=60) == 0, self.process.stderr.read() if self.process.stderr else ""


@pytest.fixture
def owner(tmp_path: Path) -> Iterator[Owner]:
    running = Owner(tmp_path / "db")
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait()


def cli_sql(path: Path, statement: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "timestep", "sql", statement, "--pglite-path", str(path)],
        capture_output=True, text=True, env=child_env(), timeout=120,
    )


def read_back(path: Path) -> dict[str, list[int]]:
    """The rows as a fresh process reads them."""
    code = """
        import asyncio, json, sys
        from timestep import open_store
        async def main():
            rows = {}
            for namespace in (None, "ns-a"):
                async with await open_store(pglite_path=sys.argv[1], namespace=namespace) as store:
                    rows[namespace or "default"] = [r["n"] for r in await store.fetch("SELECT n FROM kept ORDER BY abs(n)")]
            print(json.dumps(rows))
        asyncio.run(main())
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(path)], capture_output=True, text=True, env=child_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_cli_statements_cannot_break_another_process(owner: Owner, tmp_path: Path) -> None:
    path = tmp_path / "db"
    for statement in REFUSED + UNDONE:
        done = cli_sql(path, statement)
        if statement in REFUSED:
            assert done.returncode == 1, (statement, done.stdout, done.stderr)
            assert "refused" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        else:
            assert done.returncode == 0, (statement, done.stderr)
        assert owner.state() == CLEAN, statement
        owner.write()
        assert cli_sql(path, "SELECT count(*) FROM kept").returncode == 0  # opens keep working
    owner.stop()
    rows = read_back(path)
    assert rows == {"default": list(range(1, owner.written + 1)), "ns-a": [-n for n in range(1, owner.written + 1)]}


async def test_store_calls_cannot_break_another_process(owner: Owner, tmp_path: Path) -> None:
    path = tmp_path / "db"
    async with await open_store(pglite_path=path) as intruder:  # shares the owner's sidecar
        for statement in REFUSED:
            with pytest.raises(StatementRefused, match="refused"):
                await intruder.query(statement)
            if statement.startswith(("SET", "RESET")):
                await intruder.execute_batch([("SELECT 1", []), (statement, [])])  # allowed in a batch, undone after it
            else:
                with pytest.raises(StatementRefused) as refused:
                    await intruder.execute_batch([("SELECT 1", []), (statement, [])])
                assert refused.value.statement_index == 1
            assert owner.state() == CLEAN, statement
            owner.write()
        for statement in UNDONE:
            await intruder.query(statement)
            await intruder.execute_batch([(statement, [])])
            assert owner.state() == CLEAN, statement
            owner.write()
        await intruder.execute_batch([("SET default_transaction_read_only = on", []), ("SET ROLE intruder", [])])
        assert owner.state() == CLEAN
        for script in SCRIPTS_LEFT_OPEN:
            with pytest.raises(TransactionLeftOpen, match="rolled back"):
                await intruder.execute_script(script)
            assert owner.state() == CLEAN, script
            owner.write()
        await intruder.execute_script(SCRIPT_UNDONE)
        assert owner.state() == CLEAN
        owner.write()
        assert -1 not in [r["n"] for r in await intruder.fetch("SELECT n FROM kept")]
    owner.stop()
    rows = read_back(path)
    assert rows == {"default": list(range(1, owner.written + 1)), "ns-a": [-n for n in range(1, owner.written + 1)]}


async def test_the_same_rules_on_both_backends(store: Store, table: str) -> None:
    """What a Store call may run, and what it leaves behind, is the same on PGlite and PostgreSQL."""
    await store.execute(f"CREATE TABLE {table} (n int)")
    for statement in ["BEGIN", "COMMIT", "SET statement_timeout = 1", "LISTEN x", "PREPARE p AS SELECT 1", "DECLARE c CURSOR WITH HOLD FOR SELECT 1"]:
        with pytest.raises(StatementRefused):
            await store.query(statement)
    with pytest.raises(StatementRefused) as refused:
        await store.execute_batch([(f"INSERT INTO {table} VALUES (1)", []), ("COMMIT", [])])
    assert refused.value.statement_index == 1
    with pytest.raises(TransactionLeftOpen):
        await store.execute_script(f"BEGIN; INSERT INTO {table} VALUES (2)")
    await store.execute_script(f"SET statement_timeout = 4000; CREATE TEMP TABLE {table} (n int)")
    assert await store.fetchval("SELECT current_setting('statement_timeout')") == "0"
    # SET LOCAL belongs in a batch, for that transaction only.
    await store.execute_batch([("SET LOCAL statement_timeout = 5000", []), (f"INSERT INTO {table} VALUES (4)", [])])
    assert await store.fetchval("SELECT current_setting('statement_timeout')") == "0"
    assert [r["n"] for r in await store.fetch(f"SELECT n FROM {table} ORDER BY n")] == [4]
    # An empty statement, and several in one query, behave the same too.
    assert (await store.query("")).rows == []
    with pytest.raises(Exception) as several:
        await store.query("SELECT 1; SELECT 2")
    assert getattr(several.value, "sqlstate", None) == "42601"
