"""Prompt styles side by side on GSM8K *train* problems (never the test set), greedy.

    python -m benchmarks.prompt_candidates [--limit 100] [--styles few_shot,chat,system]
        [--model default] [--out docs/measured/prompts]

For each style, `rstar eval --algorithms greedy` on the same first N train problems (resumable:
a style already evaluated is read back), then one table: accuracy, share of trajectories that
reached an answer (well-formed: every step in the format, code that ran, a boxed answer),
mean generated and prompt tokens. The default prompt style is chosen from this table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k_train.jsonl"


def run_style(style: str, args: argparse.Namespace) -> dict:
    out = Path(args.out) / style
    cmd = [sys.executable, "-m", "clients.cli", "eval", "--data", str(args.data),
           "--limit", str(args.limit), "--algorithms", "greedy", "--budgets", "1",
           "--model", args.model, "--prompt-style", style, "--concurrency", str(args.concurrency),
           "--out", str(out), "--resume"]  # fmt: skip
    print(f"[{style}] {' '.join(cmd[2:])}", flush=True)
    subprocess.run(cmd, check=True)
    return json.loads((out / "report.json").read_text())


def summary(style: str, report: dict) -> dict:
    (run,) = [r for r in report["runs"] if r["algorithm"] == "greedy"]
    n = run["n"]
    answered = run["answered"] / n if n else None
    return {
        "style": style,
        "n": n,
        "accuracy": run["accuracy"],
        "answered": answered,
        "tokens": run["mean_tokens"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default=str(DATA), help="train problems (JSONL)")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--styles", default="few_shot,chat,system")
    ap.add_argument("--model", default="default")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--out", default="docs/measured/prompts")
    args = ap.parse_args()
    if "test" in Path(args.data).name:
        ap.error("prompts are chosen on train problems, never on the test set")
    rows = [summary(s, run_style(s, args)) for s in args.styles.split(",")]
    print(
        f"\nGreedy on the first {args.limit} problems of {Path(args.data).name}, model {args.model}"
    )
    print(f"{'style':10} {'n':>4} {'accuracy':>9} {'reached an answer':>18} {'mean tokens':>12}")
    for r in rows:
        print(
            f"{r['style']:10} {r['n']:4d} {100 * r['accuracy']:8.1f}% "
            f"{100 * r['answered']:17.1f}% {r['tokens']:12.1f}"
        )


if __name__ == "__main__":
    main()
