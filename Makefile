# Quick start:  make demo   (runs the node on its built-in scene and writes the result)
#               make test   (runs the test suite)
# Both create .venv with the pinned requirements when it is missing.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv test test-fast demo bench eval clean

venv: $(STAMP)

$(STAMP): requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q test

demo: $(STAMP)
	$(VENV)/bin/fusion-ros demo --out demo_out

bench: $(STAMP)
	$(VENV)/bin/fusion-ros bench --json

clean:
	rm -rf $(VENV) demo_out .pytest_cache
