"""A stop rule replayed on chains sampled in full: the settle threshold chosen from one run.

    python -m benchmarks.settle_replay RESULTS.jsonl [--rules unbeatable,confident:0.95,...]
        [--chains 8,16] [--max-net-loss 2] [--orders 20] [--seed 0]

Self-consistency's chains are independent samples, so a run that spent its whole budget
(`stop_when` budget, no token cap) holds what a run under a stop rule would have drawn.
Replaying a problem's chains, scheduled as `search.baselines.sample_chains` schedules them under
a rule (`TOKEN_BUDGET_WIDTH` in flight, one step a wave, the rule read after each wave), gives the
answer, chains and tokens the rule would have spent: every threshold from one run, where running
each would cost a run apiece. A run spent in full starts every chain at once, so its record lists
them in the order they ended, shortest first; a run under a rule starts them in random order. So
each problem's chains are replayed in a random order (seeded by `--seed` and the problem's id),
not the record's. Per rule: accuracy, mean chains and tokens, the share of tokens saved, and
wins / losses against the full budget replayed the same way, with the exact sign test. A chain
cut short when the rule fires counts its tokens pro rata by steps (a record keeps a chain's
tokens, not each step's). `--chains` replays smaller budgets too, on that many of the chains (a
run at 16 holds one at 8), and the rule to adopt is named by a rule stated before the data: the
most tokens saved among the rules that lose at most `--max-net-loss` problems net against the
full budget.

The records need `tree.ends` (evaluations made since it was kept). Replayed votes break ties by
the earliest answer, where the search breaks them by score: the full budget's replayed accuracy
is printed beside the run's own to show what that changes.
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

from evaluation.records import RunKey, read_results
from evaluation.stats import sign_test_fields
from search.baselines import TOKEN_BUDGET_WIDTH
from search.budget import Budget
from search.grading import answers_equal, group_equal
from search.settle import StopWhen, settled

Chain = tuple[str | None, int, int]  # answer (None: a dropped step ended it), steps, tokens
DEFAULT_RULES = "unbeatable,confident:0.8,confident:0.9,confident:0.95,confident:0.99"


@dataclass
class Replayed:
    answer: str | None
    chains: int  # chains started
    tokens: float


def _vote(answers: Sequence[str]) -> tuple[list[int], str | None]:
    """Votes per cluster of equivalent answers, and the leader (the earliest on a tie)."""
    clusters = group_equal(answers, str)
    votes = [len(c) for c in clusters]
    leader = max(range(len(clusters)), key=lambda i: (votes[i], -i), default=None)
    return votes, None if leader is None else clusters[leader][0]


def replay(
    chains: Sequence[Chain], rule: StopWhen, confidence: float = 0.95,
    width: int = TOKEN_BUDGET_WIDTH,
) -> Replayed:  # fmt: skip
    """What `rule` would have spent and answered had these chains been drawn under it."""
    n = len(chains)
    width = n if rule == "budget" else min(n, width)
    started = finished = 0
    in_flight: list[list[int]] = []  # [chain index, steps made]
    answers: list[str] = []
    spent = 0.0
    while True:
        while started < n and len(in_flight) < width:
            in_flight.append([started, 0])
            started += 1
        if not in_flight:
            break
        still = []
        for item in in_flight:
            item[1] += 1
            answer, steps, tokens = chains[item[0]]
            if item[1] < steps:
                still.append(item)
                continue
            finished += 1
            spent += tokens
            if answer is not None:
                answers.append(answer)
        in_flight = still
        votes, _ = _vote(answers)
        if (in_flight or started < n) and settled(rule, votes, n - finished, confidence):
            spent += sum(chains[i][2] * made / chains[i][1] for i, made in in_flight)
            break
    return Replayed(_vote(answers)[1], started, spent)


def parse_rule(text: str) -> tuple[StopWhen, float]:
    """`unbeatable`, `budget` or `confident:THRESHOLD`."""
    name, _, threshold = text.partition(":")
    if name not in ("budget", "unbeatable", "confident"):
        raise ValueError(f"unknown rule {text!r}: budget, unbeatable or confident:THRESHOLD")
    # checked as a search's budget checks it: a threshold of 1/2 would settle before any vote
    budget = Budget(stop_when=name, settle_confidence=float(threshold or 0.95))
    return budget.stop_when, budget.settle_confidence


def replayable(rec: dict[str, Any]) -> bool:
    """A record whose chains can be replayed: it kept them (`tree.ends`) and did not fail."""
    return (rec.get("tree") or {}).get("ends") is not None and not rec.get("error")


def drawn(rec: dict[str, Any], seed: int | None) -> list[Chain]:
    """A record's chains in a random order a live run could have drawn them in (`seed` None:
    the order recorded)."""
    chains: list[Chain] = [(a, max(1, int(d)), int(t)) for a, d, t in rec["tree"]["ends"]]
    if seed is not None:
        random.Random(f"{seed}:{rec['id']}").shuffle(chains)
    return chains


def compare(
    records: Sequence[dict[str, Any]], rules: Sequence[str], chains_cap: int | None = None,
    seed: int | None = 0, orders: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """Per rule (and the full budget, `budget`): accuracy, mean chains and tokens replayed, and
    the sign test against the full budget; on `chains_cap` of each record's chains if set.

    Over `orders` random orders of each problem's chains (seeds `seed`, `seed` + 1, ...) a
    problem counts its share right; one order decides a close problem by the luck of the draw.
    `net_lost` is the problems the rule loses net against the full budget, per order."""
    orders = 1 if seed is None else orders
    right: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    spent: dict[str, list[Replayed]] = defaultdict(list)
    parsed = {text: parse_rule(text) for text in ("budget", *rules)}
    for rec, k in product(filter(replayable, records), range(orders)):
        chains = drawn(rec, None if seed is None else seed + k)[:chains_cap]
        gold = str(rec["gold"])
        for text, rule in parsed.items():
            got = replay(chains, *rule)
            ok = got.answer is not None and answers_equal(gold, got.answer)
            right[text][rec["id"]] += ok / orders
            spent[text].append(got)
    out: dict[str, Any] = {}
    full_tokens = sum(r.tokens for r in spent["budget"])
    for text in ("budget", *rules):
        n = len(right[text])
        if not n:
            continue
        row: dict[str, Any] = {
            "problems": n,
            "accuracy": round(sum(right[text].values()) / n, 4),
            "mean_chains": round(sum(r.chains for r in spent[text]) / len(spent[text]), 2),
            "mean_tokens": round(sum(r.tokens for r in spent[text]) / len(spent[text]), 1),
            "tokens_saved": round(1 - sum(r.tokens for r in spent[text]) / full_tokens, 4)
            if full_tokens
            else 0.0,
        }
        if text != "budget":
            row.update(sign_test_fields(right[text], right["budget"]))
            net = sum(right["budget"].values()) - sum(right[text].values())
            row["net_lost"] = round(net, 2)
        out[text] = row
    return out


def chosen(table: dict[str, Any], max_net_loss: int) -> str | None:
    """The rule saving the most tokens among those losing at most `max_net_loss` problems net."""
    ok = [t for t, row in table.items() if row.get("net_lost", float("inf")) <= max_net_loss]
    return max(ok, key=lambda t: table[t]["tokens_saved"], default=None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.settle_replay", description=__doc__.split("\n\n")[1]
    )
    ap.add_argument("results", nargs="+", help="results.jsonl files of `rstar eval`")
    ap.add_argument("--algorithm", default="self_consistency", help="the chain search replayed")
    ap.add_argument("--rules", default=DEFAULT_RULES, help="comma-separated rules to replay")
    ap.add_argument(
        "--chains", default="", help="comma-separated smaller budgets replayed on that many chains"
    )
    ap.add_argument(
        "--orders", type=int, default=20,
        help="random orders each problem's chains are replayed in (it counts its share right)",
    )  # fmt: skip
    ap.add_argument("--seed", type=int, default=0, help="seeds the first of those orders")
    ap.add_argument(
        "--max-net-loss", type=int, default=2,
        help="the rule adopted loses at most this many problems net against the full budget",
    )  # fmt: skip
    args = ap.parse_args(argv)
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    try:
        for r in rules:
            parse_rule(r)
        caps = [int(c) for c in args.chains.split(",") if c.strip()]
    except ValueError as e:
        ap.error(str(e))
    if args.orders < 1:
        ap.error(f"--orders {args.orders}: replay each problem's chains in at least one order")
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in args.results:
        for (alg, budget, tokens, rule, fmt, _), rec in read_results(Path(path)).items():
            if alg == args.algorithm and rule == "budget" and not tokens:  # spent in full
                runs[RunKey(alg, budget, step_format=fmt).label].append(rec)
    if not runs:
        print(f"no {args.algorithm} records spent in full (no stop rule, no token cap)")
        return 1
    for (label, recs), cap in product(sorted(runs.items()), [None, *caps]):
        if cap is not None and cap >= recs[0]["budget"]:
            continue  # the run itself
        table = compare(recs, rules, cap, args.seed, args.orders)
        if not table:
            print(f"{label}: no records with tree.ends (evaluations made before they were kept?)")
            continue
        if cap is None:
            kept = list(filter(replayable, recs))
            own = sum(bool(r.get("correct")) for r in kept) / len(kept)
            print(f"{label}: {table['budget']['problems']} problems (the run's own accuracy "
                  f"{100 * own:.1f}%)")  # fmt: skip
        else:
            print(f"{label}, {cap} of its chains: {table['budget']['problems']} problems")
        for text, row in table.items():
            vs = (
                f"  vs full: +{row['won']} −{row['lost']}, sign test p = {row['p']},"
                f" {row['net_lost']:g} lost net"
                if "won" in row
                else ""
            )
            print(
                f"  {text:<16} {100 * row['accuracy']:5.1f}%  {row['mean_chains']:5.2f} chains"
                f"  {row['mean_tokens']:7.1f} tok  saved {100 * row['tokens_saved']:4.1f}%{vs}"
            )
        pick = chosen(table, args.max_net_loss)
        print(f"  chosen (most saved, at most {args.max_net_loss} lost net): {pick or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
