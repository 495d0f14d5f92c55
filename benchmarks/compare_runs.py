"""Runs of `rstar eval` side by side, across output folders, on the problems they share.

    python -m benchmarks.compare_runs DIR_OR_RESULTS [...] [--base LABEL] [--runs LABEL,...]

Variants of one search are measured in folders of their own (scripts/search_dev.sh); this
prints each run's accuracy with its Wilson interval, mean generated tokens, how its searches
stopped, and its wins / losses against the base run (the first, or `--base`) on the problems
both ran, with the exact two-sided sign test. A run is named `folder:algorithm@budget`;
`--runs` keeps the named ones, so a run still under way does not shrink the others' comparison.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from evaluation.records import RESULTS, RunKey, read_results
from evaluation.stats import sign_test, wilson_interval


def load(paths: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Records by run name, then by problem id (errors left out)."""
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    for raw in paths:
        path = Path(raw)
        results = path / RESULTS if path.is_dir() else path
        folder = results.parent.name
        for (alg, budget, tokens, rule, fmt, pid), rec in read_results(results).items():
            if not rec.get("error"):
                run = RunKey(alg, budget, tokens or 0, rule, fmt)
                runs.setdefault(f"{folder}:{run.label}", {})[pid] = rec
    return runs


def rows(runs: dict[str, dict[str, dict[str, Any]]], base: str) -> list[dict[str, Any]]:
    shared = set.intersection(*(set(r) for r in runs.values())) if runs else set()
    ref = {i: bool(runs[base][i]["correct"]) for i in shared}
    out = []
    for name, recs in runs.items():
        n = len(shared)
        correct = sum(bool(recs[i]["correct"]) for i in shared)
        low, high = wilson_interval(correct, n)
        won, lost, p = sign_test({i: bool(recs[i]["correct"]) for i in shared}, ref)
        out.append(
            {
                "run": name,
                "n": n,
                "correct": correct,
                "accuracy": correct / n if n else None,
                "interval": (low, high),
                "mean_tokens": sum(recs[i]["tokens"] for i in shared) / n if n else None,
                "stopped_by": Counter(recs[i].get("stopped_by") for i in shared),
                "vs_base": None if name == base else (won, lost, p),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.compare_runs", description=__doc__.split("\n\n")[1]
    )
    ap.add_argument("results", nargs="+", help="`rstar eval` folders or their results.jsonl")
    ap.add_argument("--base", help="the run the others are tested against (default: the first)")
    ap.add_argument("--runs", help="comma-separated run names to compare (default: all)")
    args = ap.parse_args(argv)
    runs = load(args.results)
    if not runs:
        print("no records")
        return 1
    if args.runs:
        wanted = [r.strip() for r in args.runs.split(",") if r.strip()]
        missing = [r for r in wanted if r not in runs]
        if missing:
            print(f"no run {', '.join(map(repr, missing))}; runs: {', '.join(runs)}")
            return 2
        runs = {r: runs[r] for r in wanted}
    base = args.base or next(iter(runs))
    if base not in runs:
        print(f"no run {base!r}; runs: {', '.join(runs)}")
        return 2
    table = rows(runs, base)
    if not table[0]["n"]:
        print(f"no problem every run has; runs: {', '.join(runs)}")
        return 1
    print(f"{table[0]['n']} problems every run has; base: {base}")
    for r in table:
        low, high = r["interval"]
        vs = (
            "base"
            if r["vs_base"] is None
            else "+{} −{}, sign test p = {:.3g}".format(*r["vs_base"])
        )
        stops = ", ".join(f"{k} {v}" for k, v in r["stopped_by"].most_common())
        print(
            f"  {r['run']:<44} {100 * r['accuracy']:5.1f} % ({r['correct']}/{r['n']}, "
            f"95 % {100 * low:.1f}–{100 * high:.1f})  {r['mean_tokens']:6.0f} tok  {vs}"
            f"  [{stops}]"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
