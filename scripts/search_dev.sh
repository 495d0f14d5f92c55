#!/usr/bin/env bash
# MCTS's settings, chosen on train problems no model trained on: the dev rows (GSM8K train
# 1270-1397, docs/measured/evolution/dev/README.md), at the token budget the test comparison
# uses, with round 1's policy and PPM, next to self-consistency and best-of-N on the same
# problems. Each variant writes an `rstar eval` folder under $OUT/dev/search/; then
#     python -m benchmarks.final_choice $OUT/dev/search/*/results.jsonl
# compares the final-choice rules on the same searches (no new search).
#
#   VARIANTS="baselines c4 c2 c2-uct1 p1 c2-w4" scripts/search_dev.sh
#   VARIANTS=c2 TAG=-fit scripts/search_dev.sh    # into mcts-c2-650tok-fit/
#
#   baselines  self-consistency and best-of-N (the PPM's choice)
#   c4, c2     MCTS with 4 / 2 candidates an expansion (a rollout expands one node a depth,
#              so its tokens grow with the candidates: at 650 tokens, 4 leave about one rollout)
#   c2-uct1    2 candidates, c = 1 (the PPM's scores count more against exploration)
#   p1         2 candidates, one rollout at a time (each learns from every one before it)
#   c2-w4      2 candidates, progressive widening: a node whose children are all outcomes or
#              explored out is sampled again, up to 4 times, instead of closing
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data}
OUT=${OUT:-docs/measured/evolution}
N_DEV=${N_DEV:-64}
TOKENS=${TOKENS:-650tok}
VARIANTS=${VARIANTS:-baselines c4 c2}
TAG=${TAG:-}  # appended to each folder's name: a variant measured again after a change
CONC=${CONC:-8}

dev() {  # dev NAME FLAGS...
  local name=$1
  shift
  echo "=== $(date -u +%H:%M:%S) $name"
  $PY -m clients.cli eval --data "$DATA/gsm8k_train.jsonl" --offset 1270 --limit "$N_DEV" \
    --resume --budgets "$TOKENS" --model "$OUT/r1/policy" --ppm "$OUT/r1-head/ppm" \
    --ppm-engine vllm --concurrency "$CONC" --out "$OUT/dev/search/$name-$TOKENS$TAG" "$@"
}

for v in $VARIANTS; do
  case $v in
    baselines) dev baselines --algorithms self_consistency,best_of_n ;;
    c4) dev mcts-c4 --algorithms mcts --candidates 4 ;;
    c2) dev mcts-c2 --algorithms mcts --candidates 2 ;;
    c2-uct1) dev mcts-c2-uct1 --algorithms mcts --candidates 2 --c-uct 1 ;;
    p1) dev mcts-c2-p1 --algorithms mcts --candidates 2 --parallel 1 ;;
    c2-w4) dev mcts-c2-w4 --algorithms mcts --candidates 2 --max-expansions 4 ;;
    *) echo "unknown variant $v (baselines c4 c2 c2-uct1 p1 c2-w4)" >&2
      exit 2 ;;
  esac
done
echo "=== $(date -u +%H:%M:%S) done"
