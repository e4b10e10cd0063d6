# Set-up, demo and tests. `make setup` builds .venv from the pinned lock (CPU JAX + test-only torch).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench clean

setup:
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-lock.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .

demo:
	$(VENV)/bin/ptj demo --out demo_out

test:
	$(PY) -m pytest -n 2 -q tests

bench:
	$(PY) bench/train_step_vs_peft.py

clean:
	rm -rf demo_out .pytest_cache
