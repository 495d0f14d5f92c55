"""What an evaluation writes and reports: its files, the (algorithm, budget) keys, a record
per problem searched and the figures built from them. Below both the run (run.py) and what
presents it (report.py, progress.py), so that neither needs the other.

A record (a line of results.jsonl): algorithm, budget, max_tokens (the token budget, or None),
stop_when (the budget's stop rule; records without it spent their budget), step_format (the
policy's steps; records without it are code), id, gold, answer,
correct, tokens, seconds, rollouts, stopped_by, tokens_saved, error, and `tree` (statistics of
the search's tree) when the solver has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from evaluation.jsonl import read_records
from evaluation.problems import Problem
from search.settle import StopWhen

RESULTS, REPORT, PLOT = "results.jsonl", "report.json", "accuracy_vs_tokens.png"
# a budget's stop rules, in the order runs are planned and drawn: "budget" spends it all
STOP_RULES: tuple[str, ...] = get_args(StopWhen)
# the algorithms as tables and plots name them, in the order they are drawn
LABELS = {
    "greedy": "greedy",
    "self_consistency": "self-consistency",
    "best_of_n": "best-of-N",
    "beam_search": "beam search",
    "particle_filtering": "particle filtering",
    "mcts": "MCTS",
}


@dataclass(frozen=True, slots=True, order=True)
class RunKey:
    """One (algorithm, budget) of the evaluation. The budget is rollouts (samples), or with
    `tokens` generated tokens per search, as many rollouts as fit: the budget at which
    algorithms that spend tokens differently are compared. With a `stop_when` rule its
    searches stop once the answer is settled: a run of its own beside the same budget spent in
    full. Its `step_format` is the steps the policy writes (search.formats): code and text runs
    of the same algorithm and budget are runs of their own."""

    algorithm: str
    budget: int
    tokens: int = 0  # 0: no token budget
    stop_when: str = "budget"
    step_format: str = "code"

    @property
    def budget_label(self) -> str:
        """The budget as `--budgets` writes it: 8, 650tok, 8:confident."""
        budget = f"{self.tokens}tok" if self.tokens else str(self.budget)
        return budget if self.stop_when == "budget" else f"{budget}:{self.stop_when}"

    @property
    def label(self) -> str:
        text = "" if self.step_format == "code" else f"/{self.step_format}"
        return f"{self.algorithm}{text}@{self.budget_label}"

    def fields(self) -> dict[str, Any]:
        """The run as a record and the report name it (a token budget as max_tokens)."""
        return {
            "algorithm": self.algorithm,
            "budget": self.budget,
            "max_tokens": self.tokens or None,
            "stop_when": self.stop_when,
            "step_format": self.step_format,
        }

    def record_key(self, problem_id: str) -> RecordKey:
        """The key of this run's record of one problem."""
        return (
            self.algorithm,
            self.budget,
            self.tokens,
            self.stop_when,
            self.step_format,
            problem_id,
        )


@dataclass
class Tally:
    """Running figures of one (algorithm, budget), for progress displays."""

    total: int
    done: int = 0
    correct: int = 0
    errors: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.done if self.done else None


# what a results.jsonl line must hold to count as finished, and what report.json keeps of it
RECORD_FIELDS = ("algorithm", "budget", "id", "answer", "correct", "tokens", "seconds")
REPORTED_FIELDS = (
    "id",
    "gold",
    "answer",
    "correct",
    "tokens",
    "seconds",
    "rollouts",
    "stopped_by",
    "tokens_saved",
    "error",
)


# algorithm, budget, token budget (0: none), stop rule, step format, problem id
RecordKey = tuple[str, int, int, str, str, str]


def record_key(rec: dict[str, Any]) -> RecordKey:
    return (
        rec["algorithm"],
        int(rec["budget"]),
        int(rec.get("max_tokens") or 0),
        rec.get("stop_when") or "budget",
        rec.get("step_format") or "code",
        str(rec["id"]),
    )


def read_results(path: str | Path) -> dict[RecordKey, dict[str, Any]]:
    """The records of a results.jsonl by (algorithm, budget, token budget, stop rule, step
    format, id), read by the resumable-JSONL rule (evaluation.jsonl); a problem retried later is
    its last line."""
    return {record_key(rec): rec for rec in read_records(path, RECORD_FIELDS)}


def build_report(
    problems: Sequence[Problem],
    keys: Sequence[RunKey],
    records: dict[RecordKey, dict],
    info: dict[str, Any],
    status: str = "complete",
) -> dict[str, Any]:
    runs = []
    for k in keys:
        recs = [r for p in problems if (r := records.get(k.record_key(p.id)))]
        run = k.fields() | run_figures(recs) | {"complete": len(recs) == len(problems)}
        if summary := tree_summary(recs):
            run["tree"] = summary
        run["records"] = [{f: r.get(f) for f in REPORTED_FIELDS} for r in recs]
        runs.append(run)
    return {"status": status, **info, "problems": len(problems), "runs": runs}


def run_figures(recs: Sequence[dict]) -> dict[str, Any]:
    """One (algorithm, budget)'s figures over its records: what every report and table of
    results shows, computed in one place so that they agree."""
    n = len(recs)
    correct = sum(bool(r["correct"]) for r in recs)
    return {
        "n": n,
        "correct": correct,
        "accuracy": round(correct / n, 6) if n else None,
        "mean_tokens": round(sum(r["tokens"] for r in recs) / n, 2) if n else None,
        "mean_seconds": round(sum(r["seconds"] for r in recs) / n, 4) if n else None,
        "answered": sum(r["answer"] is not None for r in recs),
        "errors": sum(bool(r.get("error")) for r in recs),
    }


def tree_summary(recs: Sequence[dict]) -> dict[str, Any] | None:
    """Where one (algorithm, budget)'s steps went, over the records that carry tree statistics:
    the shares of generated steps dropped as invalid (by kind) and as duplicates, the mean
    depth reached, and how often the gold answer was among the candidates (`gold_reached`)
    against how often it was the one returned when it was (`picked_when_reached`)."""
    trees = [(r, t) for r in recs if (t := r.get("tree"))]
    if not trees:
        return None
    steps = sum(t["steps"] for _, t in trees)
    invalid = sum(t["invalid"] for _, t in trees)
    dups = sum(t["duplicates"] for _, t in trees)
    kinds: dict[str, int] = {}
    for _, t in trees:
        for kind, n in t["invalid_by_kind"].items():
            kinds[kind] = kinds.get(kind, 0) + n
    reached = [r for r, t in trees if t["gold_among"]]
    n = len(trees)
    return {
        "n": n,
        "invalid_share": round(invalid / steps, 4) if steps else None,
        "invalid_by_kind": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
        "duplicate_share": round(dups / (steps + dups), 4) if steps + dups else None,
        "mean_steps": round(steps / n, 2),
        "mean_max_depth": round(sum(t["max_depth"] for _, t in trees) / n, 2),
        "mean_candidates": round(sum(len(t["candidates"]) for _, t in trees) / n, 2),
        "gold_reached": round(len(reached) / n, 4),
        "picked_when_reached": (
            round(sum(bool(r["correct"]) for r in reached) / len(reached), 4) if reached else None
        ),
    }
