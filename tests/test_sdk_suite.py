"""The Agents SDK's own session tests, run against `Session` and `AdvancedSession` on each backend.

At test time this fetches the source distribution of the *installed* openai-agents (`pip
download --no-binary :all: --no-deps`, cached under the timestep cache directory), and runs
the SDK's session test files in it with tests/sdk/timestep_sdk_adapter.py, which makes their
`SQLiteSession` / `AdvancedSQLiteSession` ours. No SDK test code lives in this repository.
tests/sdk/cannot_apply.txt lists the tests that cannot apply, each with its reason: those must
fail (or, "not run:", are deselected: they would wait on SQLite's worker threads or on child
processes), every other test must pass, and none may be skipped. When openai-agents is upgraded,
this is the first thing that says what changed.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest

from conftest import child_env, require_postgres

HERE = Path(__file__).parent
# The SDK's test files of SQLiteSession and AdvancedSQLiteSession, and of the SDK's session
# wrappers (encryption, compaction) over them.
FILES = [
    "tests/memory/test_session.py",
    "tests/memory/test_session_limit.py",
    "tests/extensions/memory/test_advanced_sqlite_session.py",
    "tests/extensions/memory/test_encrypt_session.py",
    "tests/memory/test_compaction_model_visibility.py",
]
NOT_RUN = "not run:"


def cannot_apply() -> dict[str, str]:
    """node id -> reason, from tests/sdk/cannot_apply.txt."""
    listed = {}
    for line in (HERE / "sdk" / "cannot_apply.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            node, reason = (part.strip() for part in line.split(" | ", 1))
            listed[node] = reason
    return listed


def sdk_source() -> Path:
    """The installed openai-agents version's source distribution, unpacked (fetched once)."""
    release = version("openai-agents")
    # Not the tests' own TIMESTEP_CACHE_DIR (new each run): fetched once per machine and version.
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "timestep" / "sdk-source"
    unpacked = root / f"openai_agents-{release}"
    if (unpacked / "tests" / "memory").is_dir():
        return unpacked
    root.mkdir(parents=True, exist_ok=True)
    # Under pytest-xdist both workers may get here at once: one fetches, the other waits.
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (unpacked / "tests" / "memory").is_dir():
            return unpacked
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
             f"openai-agents=={release}", "--dest", str(root)],
            capture_output=True, text=True, timeout=600,
        )
        archive = root / f"openai_agents-{release}.tar.gz"
        assert fetched.returncode == 0 and archive.is_file(), (
            f"cannot fetch the openai-agents {release} source distribution from PyPI: {fetched.stderr[-2000:]}"
        )
        staging = Path(tempfile.mkdtemp(dir=root, prefix=".unpacking-"))  # renamed whole: never half there
        try:
            with tarfile.open(archive) as sdist:
                sdist.extractall(staging, filter="data")
            shutil.rmtree(unpacked, ignore_errors=True)
            (staging / unpacked.name).rename(unpacked)
        finally:
            shutil.rmtree(staging)
    return unpacked


@dataclass
class SuiteRun:
    """The SDK's tests running against one backend, in a pytest process of their own."""

    backend: str  # "pglite" or "postgres"
    process: subprocess.Popen[str]
    report: Path


@pytest.fixture(scope="module", params=["pglite", "postgres"])
def suite_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SuiteRun]:
    """The SDK's tests running against one backend, in a pytest process of their own (under
    pytest-xdist, the two backends' runs go to two workers and run side by side)."""
    backend = request.param
    target = require_postgres() if backend == "postgres" else str(tmp_path_factory.mktemp("sdk-suite") / "db")
    source = sdk_source()
    not_run = [node for node, reason in cannot_apply().items() if reason.startswith(NOT_RUN)]
    report = tmp_path_factory.mktemp(f"sdk-suite-{backend}") / "report.xml"
    env = child_env(TIMESTEP_SDK_SUITE_BACKEND=backend, TIMESTEP_SDK_SUITE_TARGET=target)
    env["PYTHONPATH"] = str(HERE / "sdk") + os.pathsep + env["PYTHONPATH"]
    command = [
        sys.executable, "-m", "pytest", *FILES, *(f"--deselect={node}" for node in not_run),
        "-p", "timestep_sdk_adapter", "-p", "no:cacheprovider",
        # --tb=line: Python 3.11 can fail to re-parse some of the SDK's test sources for a
        # long traceback ("AST constructor recursion depth mismatch"), ending the run.
        "-q", "--tb=line", f"--junitxml={report}",
    ]
    process = subprocess.Popen(command, cwd=source, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield SuiteRun(backend, process, report)
    if process.poll() is None:
        process.kill()
    process.communicate()


def test_the_sdks_session_tests_pass(suite_run: SuiteRun) -> None:
    backend = suite_run.backend
    source = sdk_source()
    listed = cannot_apply()
    not_run = sorted(node for node, reason in listed.items() if reason.startswith(NOT_RUN))
    report = suite_run.report
    output, _ = suite_run.process.communicate(timeout=1200)
    assert report.is_file(), output[-6000:]
    outcomes = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        node = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes[node] = "skipped" if case.find("skipped") is not None else "failed" if failed else "passed"
    assert len(outcomes) > 300, output[-3000:]
    failing = sorted(node for node, outcome in outcomes.items() if outcome == "failed" and node not in listed)
    skipped = sorted(node for node, outcome in outcomes.items() if outcome == "skipped")
    now_passing = sorted(node for node, outcome in outcomes.items() if outcome == "passed" and node in listed)
    missing = sorted(
        node for node in listed
        if node.split("::")[0] in FILES and node not in outcomes and node not in not_run
        or node in not_run and f"def {node.split('::')[1]}(" not in (source / node.split("::")[0]).read_text()
    )
    assert not failing, f"the SDK's tests that fail against timestep's sessions ({backend}):\n" + "\n".join(failing) + "\n\n" + output[-6000:]
    assert not skipped, "skipped, which counts as neither passing nor cannot-apply:\n" + "\n".join(skipped)
    assert not now_passing, "listed as cannot-apply but passing now: take them off tests/sdk/cannot_apply.txt:\n" + "\n".join(now_passing)
    assert not missing, "listed but no longer in the SDK's tests: take them off the list:\n" + "\n".join(missing)
