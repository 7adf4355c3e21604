# Two commands do all the set-up: `make train` (the main job) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: train test install lint docs clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

train: install
	$(VENV)/bin/densenet train $(ARGS)

test: install
	$(PY) -m pytest -q -rs --durations=20 -n auto --maxprocesses=4 --dist worksteal $(ARGS)

$(VENV)/.lint-installed: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[lint]'
	touch $@

# The import contracts, the types and the style (pyproject.toml's tool sections).
lint: $(VENV)/.lint-installed
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy densenet
	$(VENV)/bin/ruff check densenet tests benchmarks examples

$(VENV)/.docs-installed: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[docs]'
	touch $@

# The documentation site (mkdocs.yml), into site/; --strict turns a broken link,
# a missing API reference or a docstring warning into a failure (NO_MKDOCS_2_WARNING:
# mkdocs-material's notice about MkDocs 2.0, not a build warning).
docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site

clean:
	rm -rf $(VENV) *.egg-info site
