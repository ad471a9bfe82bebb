# The two commands of the README: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck pytest system-deps bench clean

$(STAMP): pyproject.toml setup.py aniworld_addon/library/_folders.c
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python >= 3.11 is needed (found: $$($(PYTHON) --version))"; exit 1; }
	@bash scripts/system-deps.sh  # first: the install compiles library/_folders.c
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m aniworld_addon serve

system-deps:
	@bash scripts/system-deps.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict aniworld_addon

pytest: $(STAMP) system-deps
	$(VENV)/bin/pytest

test: lint typecheck pytest

bench: $(STAMP) system-deps
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
