#!/usr/bin/env bash
# Self-evolution of the 0.5B default on this CPU (issue 15), in resumable stages: re-run after a
# stop and each continues where it ended (generation problem by problem, training from its last
# saved state, evals from their results.jsonl). The small artefacts (manifests, SFT data, pairs,
# eval results, training logs) land in $OUT and are committed; the weights are not: re-running a
# round's stage on a machine without them trains them again from the recorded data and settings
# (fixed seeds), and nothing else re-runs. So on a fresh clone
#     scripts/self_evolution.sh          # every stage: finished ones only rebuild their weights
# brings back every round's policy and PPM. Stages:
#   r0         round 0: SFT (LoRA) on the verified GSM8K reference solutions of the first R0_ROWS
#              train rows; its eval: greedy on the first N_GREEDY test problems
#   r0-search  round 0's policy: self-consistency, best-of-N, MCTS at BUDGET on the first N_SEARCH
#   r1         round 1: terminal-guided MCTS (R_ROLLOUTS) with round 0's policy over R1_N train
#              problems after the bootstrap's → SFT on the top trajectories + a PPM from the new
#              policy; eval: greedy
#   r1-search  round 1's policy and PPM: the three searches at BUDGET (best-of-N and MCTS read
#              the PPM; self-consistency is a vote)
#   r2, r2-search   the same with PPM-augmented MCTS from round 1's models, and up to R2_UNSOLVED
#              rollouts on the problems R_ROLLOUTS left unsolved
# The untrained default's rows are issue 14's runs (docs/measured/search/gsm8k-{greedy,search}):
# the same test problems, budgets and search settings. Then
#     python -m benchmarks.self_evolution_table
# prints the table and draws the plot. Nothing here was chosen on the test problems: the
# training settings were picked on the held-out train problems' loss / pairwise accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data}
OUT=${OUT:-docs/measured/evolution}
STAGES=${STAGES:-r0 r0-search r1 r1-search r2 r2-search}
N_GREEDY=${N_GREEDY:-200}
N_SEARCH=${N_SEARCH:-100}
BUDGET=${BUDGET:-4}
R0_ROWS=${R0_ROWS:-1070}   # → 1,005 verified solutions, ~0.26 M tokens: one LoRA epoch ≈ 41 min
#                             in bf16 on AMX, 72 min in fp32 on AVX2
R1_N=${R1_N:-200}
R2_N=${R2_N:-200}
R_ROLLOUTS=${R_ROLLOUTS:-8}
# round 2: a problem still unsolved after R_ROLLOUTS goes on to R2_UNSOLVED rollouts (the paper's
# extra rollouts on hard problems). In round 1's trees (train problems) the share of problems
# with a correct terminal was still rising at the end: 42 % within the first half of the nodes
# made, 57 % within three quarters, 64.5 % in all
R2_UNSOLVED=${R2_UNSOLVED:-16}
# the PPM on vLLM's pooling runner: its prefix cache reuses what sibling steps share; on MCTS's
# own requests 3.5x transformers' scores/s, same scores (docs/measured/engine/ppm_throughput.txt)
PPM_ENGINE=${PPM_ENGINE:-vllm}
GEN_CONC=${GEN_CONC:-8}
EVAL_CONC=${EVAL_CONC:-8}
# LoRA (2.5× full fine-tuning's tokens/s here: docs/measured/training/throughput.txt); a tenth
# of the problems held out for the SFT loss and the PPM's pairwise accuracy
# (micro-batches of 4: at 8, round 0's SFT peaked near this machine's 24 GiB, the fp32 logits
# over a 152k vocabulary being most of it)
TRAIN=(--train-lora-rank 16 --train-holdout-share 0.1 --train-warmup-ratio 0.05
  --train-micro-batch-size 4 --train-grad-accum 4)
R0_TRAIN=(--sft-lora-rank 16 --sft-lr 2e-4 --sft-epochs 1 --sft-micro-batch-size 8
  --sft-grad-accum 2 --sft-holdout-share 0.1 --sft-warmup-ratio 0.05)  # round 0 trains no PPM
# the PPM: LoRA at 2e-4, its head (trained in full) at a full fine-tuning's 1e-5 from zero (at
# 2e-4 from a random head, round 1's first PPM saturated tanh within ten steps: loss stuck at
# ln 2); one epoch (2.2 h on 2 AVX2 cores for 1,125 pairs)
R_TRAIN=(--sft-lr 1e-4 --sft-epochs 2 --ppm-lr 2e-4 --ppm-head-lr 1e-5 --ppm-epochs 1)
# from round 2: micro-batches that keep a parent step's pairs together score the texts they
# share once (on round 1's pairs 21 % fewer padded tokens an epoch); round 1 keeps the batches
# it was trained with, so that rebuilding it gives the model that was measured
R2_TRAIN=(--ppm-pair-batches parent)
# round 1 was labelled before the reference's rules (outcome Q over every terminal, the margin
# and edit-distance filters, no credit for false arithmetic): it keeps the rules it ran with
R1_LABELS=(--label-q search --q-margin none --min-edit-chars 0 --no-check-claims)
ROUND_EVAL=(--eval-data "$DATA/gsm8k_test.jsonl" --eval-limit "$N_GREEDY" --eval-algorithms greedy
  --no-eval-previous --eval-concurrency 32)

stage() { echo "=== $(date -u +%H:%M:%S) $*"; }
round() {
  $PY -m server.train_round --engine vllm --ppm-engine "$PPM_ENGINE" "${ROUND_EVAL[@]}" "$@"
}
searches() {  # searches MODEL_DIR OUT [--ppm PPM]
  local model=$1 out=$2
  shift 2
  $PY -m clients.cli eval --data "$DATA/gsm8k_test.jsonl" --limit "$N_SEARCH" --resume \
    --algorithms self_consistency,best_of_n,mcts --budgets "$BUDGET" --model "$model" \
    --concurrency "$EVAL_CONC" --ppm-engine "$PPM_ENGINE" --out "$out" "$@"
}
ppm_flag() { if [ -d "$OUT/$1/ppm" ]; then echo "--ppm $OUT/$1/ppm"; fi; }

for s in $STAGES; do
  case $s in
    r0)
      stage "round 0: bootstrap SFT on the first $R0_ROWS GSM8K train rows"
      round --bootstrap gsm8k --problems "$DATA/gsm8k_train.jsonl" --limit "$R0_ROWS" --round 0 \
        --out "$OUT/r0" "${R0_TRAIN[@]}" ;;
    r1)
      stage "round 1: terminal-guided MCTS over $R1_N train problems"
      round --problems "$DATA/gsm8k_train.jsonl" --offset "$R0_ROWS" --limit "$R1_N" --round 1 \
        --policy "$OUT/r0/policy" --rollouts "$R_ROLLOUTS" --concurrency "$GEN_CONC" \
        --out "$OUT/r1" "${TRAIN[@]}" "${R_TRAIN[@]}" "${R1_LABELS[@]}" ;;
    r2)
      stage "round 2: PPM-augmented MCTS over $R2_N train problems"
      # shellcheck disable=SC2046
      round --problems "$DATA/gsm8k_train.jsonl" --offset "$((R0_ROWS + R1_N))" --limit "$R2_N" \
        --round 2 --policy "$OUT/r1/policy" $(ppm_flag r1) --rollouts "$R_ROLLOUTS" \
        --unsolved-rollouts "$R2_UNSOLVED" --concurrency "$GEN_CONC" --out "$OUT/r2" \
        "${TRAIN[@]}" "${R_TRAIN[@]}" "${R2_TRAIN[@]}" ;;
    r0-search|r1-search|r2-search)
      r=${s%-search}
      stage "round ${r#r}'s models: the searches at $BUDGET on $N_SEARCH test problems"
      # shellcheck disable=SC2046
      searches "$OUT/$r/policy" "$OUT/$r-search" $(ppm_flag "$r") ;;
    *) echo "unknown stage $s (r0 r0-search r1 r1-search r2 r2-search)" >&2; exit 2 ;;
  esac
done
stage done
