# The project's commands. Each one installs what it needs first (uv, then the
# locked dependencies into .venv), so that it works on a fresh machine.
PYTHON ?= python3
UV := $(PYTHON) -m uv

.PHONY: install demo test test-postgres-15 bench

install:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --user uv || $(PYTHON) -m pip install --quiet uv
	@$(UV) sync --locked --extra dev --quiet --compile-bytecode

demo: install
	$(UV) run --locked --extra dev dashboard-assets demo

# Two pytest workers (pytest-xdist), each with servers of its own.
test: install
	$(UV) run --locked --extra dev pytest -n 2

# The capture, refresh, read, maintenance and least-privilege tests on
# Debian's PostgreSQL 15 (package postgresql-15), a server of its own that
# the fixtures start, and the walk through "Point it at your own database".
POSTGRES_15_BIN ?= /usr/lib/postgresql/15/bin
test-postgres-15: install
	DASHBOARD_TEST_POSTGRES_BIN=$(POSTGRES_15_BIN) $(UV) run --locked --extra dev pytest -n 2 \
		-m "postgres_versions or own_database"

bench: install
	$(UV) run --locked --extra dev python -m bench
