# Two commands do all the set-up: `make train` (the main job) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=
# onnxruntime 1.15.1's metadata asks numpy>=1.24.2, which mxnet 1.9.1 cannot
# import; the wheel runs with numpy 1.23.5 (tests/test_export.py runs it), so
# it is installed without its declared requirements, which the test extra lists.
ONNXRUNTIME := onnxruntime==1.15.1

.PHONY: train test install lint clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps $(ONNXRUNTIME)
	touch $@

install: $(VENV)/.installed

train: install
	$(VENV)/bin/densenet train $(ARGS)

test: install
	$(PY) -m pytest -q -rs $(ARGS)

$(VENV)/.lint-installed: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[lint]'
	touch $@

# The import contracts, the types and the style (pyproject.toml's tool sections).
lint: $(VENV)/.lint-installed
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy densenet
	$(VENV)/bin/ruff check densenet tests benchmarks examples

clean:
	rm -rf $(VENV) *.egg-info
