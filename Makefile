# Set-up, demo and tests. `make demo` and `make test` build .venv first when it is missing (the
# pinned lock: CPU JAX + test-only torch), so a fresh clone needs nothing else.
VENV ?= .venv
PY := $(VENV)/bin/python
PTJ := $(VENV)/bin/ptj
DEMO_OUT ?= demo_out
# The demo's backbones are tiny: XLA compile time dominates, and level 0 compiles ~3x faster.
DEMO_XLA_FLAGS ?= --xla_backend_optimization_level=0

.PHONY: setup demo test bench clean

$(PTJ):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-lock.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .

setup: $(PTJ)

demo: $(PTJ)
	XLA_FLAGS="$(DEMO_XLA_FLAGS)" $(PTJ) demo --out=$(DEMO_OUT)

test: $(PTJ)
	$(PY) -m pytest -n 2 -q tests

bench: $(PTJ)
	$(PY) bench/train_step_vs_peft.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
