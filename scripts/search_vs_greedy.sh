#!/usr/bin/env bash
# Does search help the untrained default model? Resumable: re-run after a stop, and every stage
# continues where its results.jsonl ended. Stages:
#   greedy   greedy on the first N_GREEDY GSM8K test problems
#   search   self-consistency, best-of-N, MCTS, beam search and particle filtering at BUDGETS
#            on the first N_SEARCH
#   math     greedy and MATH_ALGOS (self-consistency, best-of-N, MCTS) at BUDGETS on the first
#            N_MATH MATH-500 problems
# The runs land in $OUT/<stage>/ (report.json, results.jsonl, accuracy_vs_tokens.png), small
# enough to commit as they grow. Same prompt (the default's) and search settings everywhere;
# nothing here was tuned on the test problems.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data}
OUT=${OUT:-docs/measured/search}
STAGES=${STAGES:-greedy search math}
N_GREEDY=${N_GREEDY:-200}
N_SEARCH=${N_SEARCH:-100}
N_MATH=${N_MATH:-100}
BUDGETS=${BUDGETS:-4,8}
CONC=${CONC:-8}
SEARCH_ALGOS=${SEARCH_ALGOS:-self_consistency,best_of_n,mcts,beam_search,particle_filtering}
MATH_ALGOS=${MATH_ALGOS:-self_consistency,best_of_n,mcts}

stage() { echo "=== $(date -u +%H:%M:%S) $*"; }
# the search settings docs/measured/search was measured with (its report.json's config.search)
SEARCH=(--candidates 3 --max-depth 8 --parallel 4)
rstar_eval() {
  $PY -m clients.cli eval --model default "${SEARCH[@]}" --concurrency "$CONC" --resume "$@"
}

for s in $STAGES; do
  case $s in
    greedy)
      stage "greedy on $N_GREEDY GSM8K test problems"
      rstar_eval --data "$DATA/gsm8k_test.jsonl" --limit "$N_GREEDY" --algorithms greedy \
        --out "$OUT/gsm8k-greedy" ;;
    search)
      # greedy here too, for the one plot (the committed greedy records were copied from the
      # greedy stage's run of these problems, same model, prompt and settings; afresh, it runs)
      stage "greedy and $SEARCH_ALGOS at $BUDGETS on $N_SEARCH GSM8K test problems"
      rstar_eval --data "$DATA/gsm8k_test.jsonl" --limit "$N_SEARCH" \
        --algorithms "greedy,$SEARCH_ALGOS" --budgets "$BUDGETS" --out "$OUT/gsm8k-search" ;;
    math)
      stage "greedy and $MATH_ALGOS at $BUDGETS on $N_MATH MATH-500 problems"
      rstar_eval --data "$DATA/math500_test.jsonl" --limit "$N_MATH" \
        --algorithms "greedy,$MATH_ALGOS" --budgets "$BUDGETS" --out "$OUT/math500" ;;
    *) echo "unknown stage $s" >&2; exit 2 ;;
  esac
done
