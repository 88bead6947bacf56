"""`timestep demo`, run as a user runs it: the whole story, on both backends, with no model key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import child_env, require_postgres


@pytest.mark.parametrize("backend", ["pglite", "postgres"])
def test_demo_tells_the_whole_story(backend: str, tmp_path: Path) -> None:
    where = ["--uri", require_postgres()] if backend == "postgres" else ["--pglite-path", str(tmp_path / "db")]
    env = child_env()
    env.pop("OPENAI_API_KEY", None)
    done = subprocess.run([sys.executable, "-m", "timestep", "demo", *where], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "ScriptedModel" in out and "set OPENAI_API_KEY for a real model" in out
    assert "paused: the agent wants to call wire_money" in out
    first, second = (int(pid) for pid in re.findall(r"process (\d+)", out)[::-1][:2])
    assert first != second and first == int(re.search(r"back in process (\d+)", out).group(1))  # type: ignore[union-attr]
    assert "tool ran: 'sent $5 to Bob'" in out
    assert "final answer: 'Done: I sent $5 to Bob.'" in out
    assert "the session holds 4 items" in out
    assert "run_states says the run is finished, with output" in out
    assert "warning" not in done.stderr.lower()
