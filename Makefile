# The project's commands. Each one installs what it needs first (uv, then the
# locked dependencies into .venv), so that it works on a fresh machine.
PYTHON ?= python3
UV := $(PYTHON) -m uv

.PHONY: install demo test bench

install:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --user uv || $(PYTHON) -m pip install --quiet uv
	@$(UV) sync --locked --extra dev --quiet --compile-bytecode

demo: install
	$(UV) run --locked --extra dev dashboard-assets demo

test: install
	$(UV) run --locked --extra dev pytest

bench: install
	$(UV) run --locked --extra dev python -m bench
