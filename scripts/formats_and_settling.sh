#!/usr/bin/env bash
# The embedded default, untrained, on its two step formats and with adaptive budgets:
#
#   train    the settle rule's threshold, chosen on GSM8K train rows no round searches (7000+):
#            self-consistency @ 16 spent in full, then every rule replayed on its chains
#            (benchmarks/settle_replay.py: the chains are independent samples, so one run holds
#            what every threshold would have drawn, in random orders; 8 of a problem's chains
#            replay a budget of 8):
#            accuracy lost against tokens saved, in $OUT/train-replay.txt. THRESHOLD is the
#            confident rule it names as chosen (the most tokens saved, at most 2 of the 200
#            problems lost net against the full budget); where 8 and 16 name two, the higher.
#   formats  greedy and self-consistency @ 8 in the code format (comment + Python, run in the
#            sandbox) against the text format (the model's chat template, plain chain of
#            thought) on the first N_TEST GSM8K test problems: does executing code help it?
#   settle   self-consistency at 8 and 16 spent in full on the same test problems, and at 8 also
#            run stopped once settled at the threshold chosen on train (THRESHOLD); then the rule
#            replayed on both fixed runs' chains (test-replay.txt). The live run at 8 checks the
#            server's rule against the replay; at 16 the replay alone stands for it (the rule's
#            stop is a function of the chains drawn, and a live run would cost 3 h more on 2
#            cores). MCTS stops on the same rule; at 8 rollouts it is several times
#            self-consistency's cost here, so it is left to a machine with the time.
#
#   STAGES="train" scripts/formats_and_settling.sh      # then THRESHOLD (0.8, chosen so) and the rest
#
# Every stage resumes (`rstar eval --resume`); results go to $OUT/<stage>/, compared with
# `rstar eval`'s own report (sign tests between runs on the same problems).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data}
OUT=${OUT:-docs/measured/formats}
STAGES=${STAGES:-train formats settle}
N_TRAIN=${N_TRAIN:-200}
N_TEST=${N_TEST:-200}
THRESHOLD=${THRESHOLD:-0.8}  # chosen on train: $OUT/train-replay.txt
CONC=${CONC:-8}

evaluate() {  # evaluate OUT_DIR DATA_FILE FLAGS...
  local out=$1 data=$2
  shift 2
  echo "=== $(date -u +%H:%M:%S) $out"
  $PY -m clients.cli eval --data "$data" --resume --model default --concurrency "$CONC" \
    --out "$out" "$@"
}

for s in $STAGES; do
  case $s in
    train)
      train=(--offset 7000 --limit "$N_TRAIN" --algorithms self_consistency)
      evaluate "$OUT/train-spent" "$DATA/gsm8k_train.jsonl" "${train[@]}" --budgets 16
      $PY -m benchmarks.settle_replay "$OUT/train-spent/results.jsonl" --chains 8 \
        --rules confident:0.8,confident:0.9,confident:0.95,confident:0.99 --max-net-loss 2 |
        tee "$OUT/train-replay.txt" ;;
    formats)
      evaluate "$OUT/formats" "$DATA/gsm8k_test.jsonl" --limit "$N_TEST" \
        --algorithms greedy,self_consistency --budgets 8 --step-format code,text ;;
    settle)
      # self-consistency @ 8 in the code format is the formats stage's run: its records are
      # taken over (same key, same settings) rather than sampled again
      mkdir -p "$OUT/settle"
      [ -s "$OUT/settle/results.jsonl" ] || [ ! -s "$OUT/formats/results.jsonl" ] ||
        $PY -c 'import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if (r["algorithm"], r["budget"], r["step_format"], r["stop_when"]) == (
        "self_consistency", 8, "code", "budget") and not r.get("error"):
        print(line, end="")' "$OUT/formats/results.jsonl" >"$OUT/settle/results.jsonl"
      evaluate "$OUT/settle" "$DATA/gsm8k_test.jsonl" --limit "$N_TEST" \
        --algorithms self_consistency --budgets 8,8:confident,16 \
        --settle-confidence "$THRESHOLD"
      $PY -m benchmarks.settle_replay "$OUT/settle/results.jsonl" --chains 8 \
        --rules "confident:$THRESHOLD" --max-net-loss 2 | tee "$OUT/test-replay.txt" ;;
    *) echo "unknown stage $s (train formats settle)" >&2
      exit 2 ;;
  esac
done
echo "=== $(date -u +%H:%M:%S) done"
