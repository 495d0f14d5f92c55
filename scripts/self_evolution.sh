#!/usr/bin/env bash
# The self-evolution experiment of issue 6, resumable (re-run it after a stop). Stages:
#   r0        round 0: GSM8K's reference solutions → steps → SFT of the default model;
#             its eval: greedy on the first N_EVAL GSM8K test problems
#   base      the untrained default model, few-shot greedy on the same problems
#   r0-greedy round 0's policy greedy with `rstar eval` (when r0 trained on another machine)
#   r1        round 1: MCTS with round 0's policy over R1_N train problems (gold answer as the
#             terminal reward) → new policy (SFT from round 0's) + PPM; eval: greedy
#   r1-greedy round 1's policy greedy with `rstar eval` (on N_EVAL, when its round ran a smaller eval)
#   mcts      MCTS at EVAL_ROLLOUTS on the first M_N test problems: round 0 (no PPM) and round 1
#   plot      the four algorithms at PLOT_BUDGETS on the first M_N, last round's models
# Then `python -m benchmarks.self_evolution_table $RUNS --plot …` prints the table.
# The defaults are the scale: r0 SFT on every verified GSM8K solution (7,014 examples,
# ~2.2 M tokens: minutes on one GPU, ~17 h at the 36 tokens/s of a 2-core AVX2 CPU), greedy on
# 200 test problems, round 1 on 100. The README's table ran at a CPU-sized scale, set through
# the variables below (the exact command is in the README).
set -euo pipefail

PY=${PY:-python}
DATA=${DATA:-../shared/data}
RUNS=${RUNS:-runs/evolution}
STAGES=${STAGES:-r0 base r1 r0-greedy mcts plot}
ENGINE=${ENGINE:-vllm}
N_EVAL=${N_EVAL:-200}
M_N=${M_N:-30}
EVAL_ROLLOUTS=${EVAL_ROLLOUTS:-4}
CANDIDATES=${CANDIDATES:-3}
MAX_DEPTH=${MAX_DEPTH:-8}
EVAL_CONC=${EVAL_CONC:-32}
R1_N=${R1_N:-100}
R1_OFFSET=${R1_OFFSET:-0}
R1_ROLLOUTS=${R1_ROLLOUTS:-4}
GEN_CONC=${GEN_CONC:-8}
SFT0_FLAGS=${SFT0_FLAGS:---sft-epochs 1 --sft-lr 5e-5 --sft-micro-batch-size 16 --sft-grad-accum 2}
R1_TRAIN_FLAGS=${R1_TRAIN_FLAGS:---train-micro-batch-size 8 --train-grad-accum 2 --sft-epochs 3 --sft-lr 2e-5 --ppm-epochs 2 --ppm-lr 5e-5}
R0_FLAGS=${R0_FLAGS:-}  # e.g. --limit 8 for a smoke test
R1_FLAGS=${R1_FLAGS:-}
PLOT_BUDGETS=${PLOT_BUDGETS:-2,4}

TRAIN=$DATA/gsm8k_train.jsonl
TEST=$DATA/gsm8k_test.jsonl
SEARCH=(--candidates "$CANDIDATES" --max-depth "$MAX_DEPTH")
ROUND_EVAL=(--eval-data "$TEST" --eval-limit "$N_EVAL" --eval-algorithms greedy
  --eval-candidates "$CANDIDATES" --eval-max-depth "$MAX_DEPTH" --eval-concurrency "$EVAL_CONC"
  --no-eval-previous)

stage() { echo "=== $(date -u +%H:%M:%S) $*"; }
# the last round's models (round 1 trains nothing when its search solved nothing)
last_models() {
  if [ -d "$RUNS/r1/policy" ]; then LAST=(--model "$RUNS/r1/policy"); else LAST=(--model "$RUNS/r0/policy"); fi
  if [ -d "$RUNS/r1/ppm" ]; then LAST+=(--ppm "$RUNS/r1/ppm"); fi
}
rstar_eval() { $PY -m clients.cli eval --data "$TEST" --engine "$ENGINE" --resume "$@"; }

for s in $STAGES; do
  case $s in
    r0)
      stage "round 0 (bootstrap SFT)"
      # shellcheck disable=SC2086
      $PY -m server.train_round --bootstrap gsm8k --problems "$TRAIN" --round 0 --out "$RUNS/r0" \
        --engine "$ENGINE" "${ROUND_EVAL[@]}" $SFT0_FLAGS $R0_FLAGS
      ;;
    base)
      stage "the default model, few-shot greedy"
      rstar_eval --limit "$N_EVAL" --algorithms greedy --model default \
        --concurrency "$EVAL_CONC" --out "$RUNS/base"
      ;;
    r0-greedy)
      stage "round 0's policy, greedy"
      rstar_eval --limit "$N_EVAL" --algorithms greedy --model "$RUNS/r0/policy" \
        --concurrency "$EVAL_CONC" --out "$RUNS/r0-greedy"
      ;;
    r1)
      stage "round 1 (MCTS over $R1_N train problems)"
      # shellcheck disable=SC2086
      $PY -m server.train_round --problems "$TRAIN" --offset "$R1_OFFSET" --limit "$R1_N" \
        --policy "$RUNS/r0/policy" --round 1 --out "$RUNS/r1" --engine "$ENGINE" \
        --rollouts "$R1_ROLLOUTS" "${SEARCH[@]}" --concurrency "$GEN_CONC" \
        "${ROUND_EVAL[@]}" $R1_TRAIN_FLAGS $R1_FLAGS
      ;;
    r1-greedy)
      stage "round 1's policy, greedy"
      rstar_eval --limit "$N_EVAL" --algorithms greedy --model "$RUNS/r1/policy" \
        --concurrency "$EVAL_CONC" --out "$RUNS/r1-greedy"
      ;;
    mcts)
      stage "MCTS @ $EVAL_ROLLOUTS on the first $M_N: round 0 (no PPM), then the last round"
      rstar_eval --limit "$M_N" --algorithms mcts --budgets "$EVAL_ROLLOUTS" "${SEARCH[@]}" \
        --model "$RUNS/r0/policy" --concurrency "$GEN_CONC" --out "$RUNS/r0-mcts"
      last_models
      rstar_eval --limit "$M_N" --algorithms mcts --budgets "$EVAL_ROLLOUTS" "${SEARCH[@]}" \
        "${LAST[@]}" --concurrency "$GEN_CONC" --out "$RUNS/r1-mcts"
      ;;
    plot)
      last_models
      stage "four algorithms × budgets $PLOT_BUDGETS on the first $M_N: ${LAST[*]}"
      rstar_eval --limit "$M_N" --budgets "$PLOT_BUDGETS" "${SEARCH[@]}" "${LAST[@]}" \
        --concurrency "$GEN_CONC" --out "$RUNS/plot"
      ;;
    *) echo "unknown stage $s (r0 base r0-greedy r1 r1-greedy mcts plot)" >&2; exit 2 ;;
  esac
done
stage done
