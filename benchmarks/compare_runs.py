"""Runs of `rstar eval` side by side, across output folders, on the problems they share.

    python -m benchmarks.compare_runs DIR_OR_RESULTS [...] [--base LABEL] [--runs LABEL,...]

Variants of one search are measured in folders of their own (scripts/search_dev.sh); this
prints each run's accuracy with its Wilson interval, mean generated tokens, how its searches
stopped, and its wins / losses against the base run (the first, or `--base`) on the problems
both ran, with the exact two-sided sign test; for a run a stop rule ended early, those wins and
losses split by how each search stopped. For a vote whose records keep their chains
(`tree.ends`): how many votes tied, and the accuracy expected had every tie been a coin toss
among the tied answers (ties go to the answer found first, so luck with ties is part of a gap
between two runs). A run is named `folder:algorithm@budget`;
`--runs` keeps the named ones, so a run still under way does not shrink the others' comparison.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from evaluation.records import RESULTS, RunKey, read_results
from evaluation.stats import sign_test, wilson_interval
from search.grading import answers_equal, group_equal


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


def tie_chance(rec: dict[str, Any]) -> tuple[bool, float] | None:
    """(did the vote tie, the chance it picks the gold with ties as coin tosses); None for a
    record that is not a vote over kept chains."""
    ends = (rec.get("tree") or {}).get("ends")
    if rec.get("algorithm") != "self_consistency" or ends is None:
        return None
    groups = group_equal([a for a, _steps, _tokens in ends if a is not None], str)
    if not groups:
        return False, 0.0
    top = max(map(len, groups))
    tied = [g for g in groups if len(g) == top]
    gold = str(rec["gold"])
    return len(tied) > 1, sum(answers_equal(gold, g[0]) for g in tied) / len(tied)


def rows(runs: dict[str, dict[str, dict[str, Any]]], base: str) -> list[dict[str, Any]]:
    shared = set.intersection(*(set(r) for r in runs.values())) if runs else set()
    ref = {i: bool(runs[base][i]["correct"]) for i in shared}
    out = []
    for name, recs in runs.items():
        n = len(shared)
        correct = sum(bool(recs[i]["correct"]) for i in shared)
        low, high = wilson_interval(correct, n)
        right = {i: bool(recs[i]["correct"]) for i in shared}
        won, lost, p = sign_test(right, ref)
        by_stop: dict[str, tuple[int, int]] = {}
        for reason in sorted({str(recs[i].get("stopped_by")) for i in shared}):
            ids = {i for i in shared if str(recs[i].get("stopped_by")) == reason}
            by_stop[reason] = sign_test({i: right[i] for i in ids}, ref)[:2]
        chances = [c for i in shared if (c := tie_chance(recs[i])) is not None]
        votes_kept = bool(shared) and len(chances) == len(shared)
        ties = (sum(t for t, _ in chances), sum(e for _, e in chances)) if votes_kept else None
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
                "vs_base_by_stop": None if name == base or len(by_stop) < 2 else by_stop,
                "ties": ties,  # (votes tied, correct expected with ties as coin tosses)
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
        if r["vs_base_by_stop"]:
            split = "; ".join(f"{k}: +{w} −{lo}" for k, (w, lo) in r["vs_base_by_stop"].items())
            print(f"  {'':<44} against the base by how it stopped: {split}")
        if r["ties"]:
            tied, expected = r["ties"]
            print(
                f"  {'':<44} votes tied on {tied}; ties as coin tosses: {expected:.1f} correct "
                f"expected ({100 * expected / r['n']:.1f} %)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
