"""How well a PPM ranks preference pairs it was not trained on: the share of pairs whose chosen
side it scores above the rejected one (ties count half), overall and per pair kind (`step`:
sibling steps after a shared prefix; `final`: the rest of a correct against a wrong
trajectory), each with its Wilson 95 % interval.

A round's trainer reports this on the tenth of its own problems it holds out (about a hundred
pairs: an interval of ±0.1). Pairs from problems no PPM has seen are the larger, unbiased check:

    rstar eval-ppm --ppm docs/measured/evolution/r1-head/ppm \
        --trees docs/measured/evolution/dev/trees.jsonl --out r1-head-on-dev.json

With `--trees`, the pairs are drawn from searched trees by rules that leave no doubt about the
labels (`terminal` and `step` kinds, search.extract.dev_pairs): the dev set every PPM is
compared on. Pairs come many to a problem, so the interval that counts is the bootstrap over
problems.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from evaluation.jsonl import read_records
from evaluation.stats import cluster_bootstrap_interval, wilson_interval
from search.extract import PreferencePair, dev_pairs
from search.protocols import RewardModel, ScoreRequest


class PairAccuracy(BaseModel):
    pairs: int
    problems: int
    accuracy: float
    ci95: tuple[float, float]  # Wilson, as if the pairs were independent
    ci95_by_problem: tuple[float, float]  # bootstrap over problems: pairs of one problem agree
    ties: int
    mean_margin: float  # mean of s(chosen) - s(rejected): how far apart, not only which way


class PairReport(BaseModel):
    overall: PairAccuracy
    by_kind: dict[str, PairAccuracy]


async def score_pairs(
    reward_model: RewardModel,
    pairs: Sequence[PreferencePair],
    batch_size: int = 64,
    progress: Callable[[int], Any] | None = None,
) -> list[tuple[float, float]]:
    """(chosen, rejected) scores per pair, `batch_size` pairs per reward-model call (both sides
    in one call, so an engine with a prefix cache reuses their shared prefix)."""
    out: list[tuple[float, float]] = []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        reqs: list[ScoreRequest] = [p.chosen_request() for p in chunk]
        reqs += [p.rejected_request() for p in chunk]
        scores = await reward_model.score(reqs)
        out += list(zip(scores[: len(chunk)], scores[len(chunk) :], strict=True))
        if progress is not None:
            progress(len(chunk))
    return out


def pair_wins(scores: Sequence[tuple[float, float]]) -> list[float]:
    """1 per pair whose chosen side scores above the rejected, ½ for a tie, else 0."""
    return [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in scores]


def _accuracy(
    pairs: Sequence[PreferencePair], scores: Sequence[tuple[float, float]]
) -> PairAccuracy:
    wins = pair_wins(scores)
    right, n = sum(wins), len(scores)
    problems = [p.problem_id or p.problem for p in pairs]
    return PairAccuracy(
        pairs=n,
        problems=len(set(problems)),
        accuracy=right / n if n else 0.0,
        ci95=wilson_interval(right, n),
        ci95_by_problem=cluster_bootstrap_interval(wins, problems),
        ties=sum(1 for c, r in scores if c == r),
        mean_margin=sum(c - r for c, r in scores) / n if n else 0.0,
    )


def pair_report(
    pairs: Sequence[PreferencePair], scores: Sequence[tuple[float, float]]
) -> PairReport:
    kinds = sorted({p.kind for p in pairs})
    by_kind = {}
    for kind in kinds:
        idx = [i for i, p in enumerate(pairs) if p.kind == kind]
        by_kind[kind] = _accuracy([pairs[i] for i in idx], [scores[i] for i in idx])
    return PairReport(overall=_accuracy(pairs, scores), by_kind=by_kind)


def tree_dev_pairs(path: str | Path, per_kind: int = 8) -> list[PreferencePair]:
    """The dev pairs of every tree in a round's tree file (search.extract.dev_pairs)."""
    from search.tree import Tree

    pairs: list[PreferencePair] = []
    for rec in read_records(path, ("tree",)):
        tree = Tree.from_json(json.dumps(rec["tree"]))
        pairs += dev_pairs(tree, str(rec.get("id")), per_kind)
    return pairs
