"""Step-tag PRMs of the Qwen2.5-Math-PRM kind: the steps joined by a tag token in a chat, and a
two-class head read at each tag. A step's P(good) is read at its tag; the score of a request is
2·a − 1 for `a` their aggregation (`last`, `min` or `prod`, RSTAR_PRM_AGGREGATION)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

from search.protocols import ScoreRequest
from search.steps import FORMAT_TAGS

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
_TAGS = re.compile("|".join(re.escape(t) for t in FORMAT_TAGS))

Aggregation = Literal["last", "min", "prod"]


def prm_steps(req: ScoreRequest) -> list[str]:
    """The steps as the PRM reads them: a text step as written (its delimiter dropped), a
    code step with our format's tags removed and its whitespace folded."""
    if req.step_format == "text":
        return [s.strip() for s in req.steps]
    return [" ".join(_TAGS.sub(" ", s).split()) for s in req.steps]


def prm_messages(req: ScoreRequest, step_tag: str) -> list[dict[str, str]]:
    """The chat a step-tag PRM was trained on: each step followed by the tag."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": req.problem},
        {"role": "assistant", "content": step_tag.join(prm_steps(req)) + step_tag},
    ]


def aggregate(per_step: Sequence[Sequence[float]], how: Aggregation = "last") -> float:
    """Per-tag [P(bad), P(good)] rows → one score in [-1, 1]: 2·a − 1 for `a` the last step's
    P(good) (`last`), the lowest (`min`: the path is as good as its worst step) or their
    product (`prod`: PRM800K's solution score)."""
    if not per_step:
        raise ValueError("the PRM returned no step scores (is the step tag in its vocabulary?)")
    good = [float(row[-1]) for row in per_step]
    if how == "last":
        a = good[-1]
    elif how == "min":
        a = min(good)
    elif how == "prod":
        a = math.prod(good)
    else:
        raise ValueError(f"unknown aggregation {how!r}; choose last, min or prod")
    return 2.0 * a - 1.0


def last_step_score(per_step: Sequence[Sequence[float]]) -> float:
    """Per-tag [P(bad), P(good)] rows → score of the last step in [-1, 1]."""
    return aggregate(per_step, "last")
