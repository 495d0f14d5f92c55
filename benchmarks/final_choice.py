"""The final answer of finished searches, re-decided offline under every choice rule.

    python -m benchmarks.final_choice RESULTS.jsonl [...] [--algorithm mcts] [--budget 650tok]

A search's answer is one choice among the terminals it reached (search/judge.py): the single
best-scored one, a plain vote, or a score-weighted vote over all or the top k. An evaluation
keeps each terminal's answer and score (`tree.terminal_scores` in results.jsonl), so the rules
can be compared on the same searches without searching again. Prints, per (algorithm, budget),
how often the gold answer was among the terminals at all (the ceiling of every rule: reach, not
choice, when it is low), each rule's accuracy, and its wins / losses against the default rule
on the problems where the two differ, with the exact two-sided sign test. Choose a rule on
train problems, never on test.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evaluation.records import read_results
from evaluation.stats import sign_test_fields
from search.grading import answers_equal, group_equal

DEFAULT = "weighted_vote"
Terminal = tuple[str, float, float]  # answer, score, Q


def _ranked(terminals: Sequence[Terminal]) -> list[Terminal]:
    return sorted(terminals, key=lambda t: (t[1], t[2]), reverse=True)


def choose(terminals: Sequence[Terminal], rule: str) -> str | None:
    """The answer `rule` picks: best | vote | weighted_vote | weighted_vote@k | vote@k."""
    if not terminals:
        return None
    ranked = _ranked(terminals)
    if rule == "best":
        return ranked[0][0]
    name, _, k = rule.partition("@")
    voters = ranked[: int(k)] if k else ranked
    weight: Callable[[Terminal], float] = (
        (lambda t: 1.0) if name == "vote" else (lambda t: (t[1] + 1.0) / 2.0)
    )
    groups = group_equal(voters, lambda t: t[0])
    best = max(groups, key=lambda g: (sum(weight(t) for t in g), max(t[1] for t in g)))
    return best[0][0]


REACHED = "gold reached"  # not a rule: the share of searches whose terminals hold the gold answer
RULES = ("best", "vote", "weighted_vote", "weighted_vote@2", "weighted_vote@4", "vote@4")


def compare(records: Sequence[dict[str, Any]], rules: Sequence[str] = RULES) -> dict[str, Any]:
    """Per rule: accuracy over the records, and the sign test against the default rule."""
    right: dict[str, dict[str, bool]] = defaultdict(dict)
    reached: dict[str, bool] = {}
    for rec in records:
        scores = (rec.get("tree") or {}).get("terminal_scores")
        if scores is None or rec.get("error"):
            continue
        terminals = [(a, s if s is not None else -1.0, q or 0.0) for a, s, q in scores]
        gold = str(rec["gold"])
        reached[rec["id"]] = any(answers_equal(gold, a) for a, _, _ in terminals)
        for rule in rules:
            picked = choose(terminals, rule)
            right[rule][rec["id"]] = picked is not None and answers_equal(gold, picked)
    out: dict[str, Any] = {}
    for rule in rules:
        got = right[rule]
        n = len(got)
        row: dict[str, Any] = {
            "problems": n,
            "accuracy": round(sum(got.values()) / n, 4) if n else None,
        }
        if rule != DEFAULT and right[DEFAULT]:
            row.update(sign_test_fields(got, right[DEFAULT]))
        out[rule] = row
    hits = [i for i, r in reached.items() if r]
    picked = right.get(DEFAULT)  # None: the default rule was not among those compared
    out[REACHED] = {
        "problems": len(reached),
        "accuracy": round(len(hits) / len(reached), 4) if reached else None,
        "picked": round(sum(picked[i] for i in hits) / len(hits), 4) if hits and picked else None,
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.final_choice", description=__doc__.split("\n\n")[1]
    )
    ap.add_argument("results", nargs="+", help="results.jsonl files of `rstar eval`")
    ap.add_argument("--algorithm", action="append", help="only these algorithms (repeatable)")
    args = ap.parse_args(argv)
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in args.results:
        for rec in read_results(Path(path)).values():
            if args.algorithm and rec["algorithm"] not in args.algorithm:
                continue
            budget = f"{rec['max_tokens']}tok" if rec.get("max_tokens") else rec["budget"]
            runs[f"{rec['algorithm']}@{budget}"].append(rec)
    if not runs:
        print("no records with terminal scores (evaluations made before they were kept?)")
        return 1
    for label, recs in sorted(runs.items()):
        table = compare(recs)
        print(f"{label}: {table[DEFAULT]['problems']} problems")
        for rule, row in table.items():
            vs = ""
            if rule == REACHED and row["picked"] is not None:
                vs = f"  ({DEFAULT} picks it in {100 * row['picked']:.0f} % of those)"
            if "won" in row:
                vs = f"  vs {DEFAULT}: +{row['won']} −{row['lost']}, sign test p = {row['p']}"
            acc = "-" if row["accuracy"] is None else f"{100 * row['accuracy']:.1f}%"
            print(f"  {rule:<17} {acc:>6}{vs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
