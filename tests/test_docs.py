"""Every code block of README.md and docs/*.md runs as written, in order, as a reader runs them:
one child process per file, its Python blocks in one namespace with top-level await (as in a
notebook), its `sh` blocks in bash, its `js` blocks in the bundled Node, its `sql` blocks on the
default store, all on a new embedded database, with the models' base URLs pointed at a
FakeModelServer through the environment. `text` blocks are listings, not code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import child_env
from timestep.store.node import find_node
from timestep.testing import FakeModelServer, RecordedRequest, Reply, call, text

ROOT = Path(__file__).resolve().parent.parent
MARKDOWN = ["README.md", *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
RUNNABLE = {"python", "sh", "js", "sql"}

# Blocks a test cannot run as written, by their first line, with where they are tested instead.
NOT_RUN = {
    "python -m pip install .                                  # from a clone of this repository":
        "installing from an index or a git URL; tests/test_wheel.py builds the wheel and installs it",
    "make demo    # sets everything up, then runs `timestep demo` on the embedded database":
        "the checkout's own set-up: tests/test_demo.py runs the demo, and `make test` is this suite",
}

# Runs in a child process (the default store is one per process). Each block is run, then
# reported; a failing one stops the file.
RUN_BLOCKS = """
import ast, asyncio, json, os, subprocess, sys
from pathlib import Path

async def main(document, blocks, node, scratch):
    namespace = {"__name__": "__docs__"}
    for number, (language, code) in enumerate(blocks, 1):
        where = f"{document} block {number} ({language})"
        if language == "python":
            result = eval(compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT), namespace)
            if asyncio.iscoroutine(result):
                await result
        elif language == "sql":
            from timestep.store.default import default_store
            await (await default_store()).query(code)
        else:
            if language == "js":
                script = Path(scratch) / f"block{number}.mjs"
                script.write_text(code)
                command = [node, str(script)]
            else:
                command = ["bash", "-euo", "pipefail", "-c", code]
            # The default store stays open in this process: a CLI or Node shares its sidecar.
            done = await asyncio.to_thread(subprocess.run, command, cwd=scratch, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                sys.exit(f"{where} exited {done.returncode}:\\n{done.stdout[-2000:]}\\n{done.stderr[-4000:]}")
        print(f"ran {where}", flush=True)

asyncio.run(main(*json.loads(sys.stdin.read())))
"""


def model(request: RecordedRequest) -> Reply:
    """The examples' model: it calls wire_money when it is offered and has not yet been told
    its output, and otherwise answers."""
    body = json.dumps(request.body)
    answered = "function_call_output" in body or '"role": "tool"' in body
    if '"wire_money"' in body and not answered:
        return call("wire_money", {"amount": 5})
    return text("Done.")


def code_blocks(document: str) -> list[tuple[str, str]]:
    """The blocks of `document` a reader would run, in order."""
    blocks = BLOCK.findall((ROOT / document).read_text())
    unlabelled = [code.splitlines()[0] for language, code in blocks if not language]
    assert not unlabelled, f"{document}: a code block without a language: {unlabelled}"
    return [(language, code) for language, code in blocks if language in RUNNABLE and code.splitlines()[0] not in NOT_RUN]


def node_project(scratch: Path) -> None:
    """Make `scratch` a Node project with this checkout installed as the docs say
    (`npm install /path/to/a/clone` links it as timestep-agents), beside the packages it uses."""
    modules = scratch / "node_modules"
    modules.mkdir()
    (modules / "timestep-agents").symlink_to(ROOT)
    for package in ("@openai", "zod"):
        (modules / package).symlink_to(ROOT / "node_modules" / package)


DOCUMENTS = [document for document in MARKDOWN if code_blocks(document)]


def test_blocks_not_run_are_still_in_the_docs() -> None:
    first_lines = {code.splitlines()[0] for document in MARKDOWN for _, code in BLOCK.findall((ROOT / document).read_text())}
    assert set(NOT_RUN) <= first_lines
    assert {"README.md", "docs/durable-runs.md", "docs/cross-language.md"} <= set(DOCUMENTS)


@pytest.mark.slow
@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_code_blocks_run_as_written(document: str, tmp_path: Path) -> None:
    blocks = code_blocks(document)
    scratch = tmp_path / "work"
    scratch.mkdir()
    node_project(scratch)
    with FakeModelServer([model] * 200) as server:
        env = child_env(
            OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="fake-key", OLLAMA_BASE_URL=server.base_url,
            TIMESTEP_PGLITE_DIR=str(tmp_path / "pglite"),
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # the installed `timestep`
        )
        env.pop("PG_CONNECTION_URI", None)  # the docs' default: the embedded database
        env.pop("TIMESTEP_NAMESPACE", None)
        done = subprocess.run(
            [sys.executable, "-c", RUN_BLOCKS], input=json.dumps([document, blocks, find_node(), str(scratch)]),
            capture_output=True, text=True, env=env, cwd=scratch, timeout=900,
        )
        requests = server.requests
    ran = [line for line in done.stdout.splitlines() if line.startswith(f"ran {document} block ")]  # not what blocks print
    assert done.returncode == 0, f"{ran[-1] if ran else 'no block'} ran last, then:\n{done.stderr[-4000:]}"
    assert ran == [f"ran {document} block {n} ({language})" for n, (language, _) in enumerate(blocks, 1)]
    if document == "README.md":
        assert any(request.model == "gpt-oss:20b" for request in requests)  # the Ollama block reached the fake server
    if document == "docs/cross-language.md":
        assert any(request.headers.get("x-stainless-lang") == "js" for request in requests)  # Node called the model


def anchors(document: Path) -> set[str]:
    """GitHub's anchors for the headings of `document`."""
    headings = re.findall(r"^#+ (.*)$", BLOCK.sub("", document.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_every_link_between_the_docs_leads_somewhere() -> None:
    broken = []
    for document in MARKDOWN:
        path = ROOT / document
        for target in re.findall(r"\]\(([^)\s]+)\)", BLOCK.sub("", path.read_text())):
            if "://" in target:
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists() or (anchor and anchor not in anchors(linked)):
                broken.append(f"{document}: {target}")
    assert not broken
