"""How many GSM8K reference solutions survive as round-0 trajectories (the bootstrap).

Converts every row to the step format, runs each converted program in the real sandbox and
checks the printed answer against the gold one with the project's grader. Prints progress,
the counts and the rejection reasons; `--out` writes the verified trajectories as JSONL and
`--sft-out` their SFT examples (bare prompt style).

    python -m benchmarks.gsm8k_bootstrap_yield [--data ../shared/data/gsm8k_train.jsonl]
        [--limit N] [--no-link] [--out trajectories.jsonl] [--sft-out sft.jsonl]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from sandbox import SandboxSettings, create_sandbox
from search.extract import render_sft
from search.grading import Grader
from training.gsm8k import BootstrapStats, bootstrap

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k_train.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--limit", type=int, default=None, help="only the first N rows")
    ap.add_argument("--no-link", action="store_true", help="keep literal calculator expressions")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=None, help="write the verified trajectories (JSONL)")
    ap.add_argument("--sft-out", default=None, help="write their SFT examples (JSONL)")
    ap.add_argument("--show-rejected", type=int, default=5, help="examples per reason")
    args = ap.parse_args()

    rows = [json.loads(line) for line in Path(args.data).read_text().split("\n") if line.strip()]
    rows = rows[: args.limit] if args.limit else rows
    pool = create_sandbox(SandboxSettings(workers=args.workers, timeout_s=5.0)).start()
    grader = Grader(workers=1)
    t0 = time.perf_counter()

    def progress(s: BootstrapStats) -> None:
        print(
            f"  {s.rows}/{len(rows)} rows  converted {s.converted}  verified {s.verified}"
            f"  ({time.perf_counter() - t0:.0f}s)",
            file=sys.stderr,
            flush=True,
        )

    try:
        good, bad, stats = asyncio.run(
            bootstrap(
                rows,
                pool,
                grader,
                concurrency=2 * args.workers,
                link_variables=not args.no_link,
                progress=progress,
            )
        )
    finally:
        pool.close()
        grader.close()

    n = stats.rows
    print(f"GSM8K bootstrap yield ({args.data}, variables linked: {not args.no_link})")
    print(f"  rows      {n}")
    print(f"  converted {stats.converted} ({100 * stats.converted / max(n, 1):.1f}%)")
    print(f"  verified  {stats.verified} ({100 * stats.verified / max(n, 1):.1f}%)")
    print(f"  seconds   {time.perf_counter() - t0:.1f}")
    steps = Counter(len(t.steps) for t in good)
    mean = sum(k * v for k, v in steps.items()) / max(len(good), 1)
    print(f"  steps per trajectory: mean {mean:.2f}, histogram {dict(sorted(steps.items()))}")
    print("  rejected:")
    for kind, count in sorted(stats.rejected.items(), key=lambda kv: -kv[1]):
        examples = [r for r in bad if r.kind == kind][: args.show_rejected]
        print(f"    {kind:<16} {count}")
        for r in examples:
            print(f"      {r.problem_id}: {r.reason[:110]}")
    if args.out:
        Path(args.out).write_text("".join(t.to_json() + "\n" for t in good))
    if args.sft_out:
        Path(args.sft_out).write_text("".join(render_sft(t).to_json() + "\n" for t in good))


if __name__ == "__main__":
    main()
