"""Step-tag PRMs of the Qwen2.5-Math-PRM kind: the steps joined by a tag token in a chat, and a
two-class head read at each tag. The score of a step is 2·P(good) − 1 at its tag."""

from __future__ import annotations

import re

from search.protocols import ScoreRequest
from search.steps import FORMAT_TAGS

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
_TAGS = re.compile("|".join(re.escape(t) for t in FORMAT_TAGS))


def prm_messages(req: ScoreRequest, step_tag: str) -> list[dict[str, str]]:
    """The chat a step-tag PRM was trained on; our format tags removed from each step."""
    steps = [" ".join(_TAGS.sub(" ", s).split()) for s in req.steps]
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": req.problem},
        {"role": "assistant", "content": step_tag.join(steps) + step_tag},
    ]


def last_step_score(per_step: list[list[float]]) -> float:
    """Per-tag [P(bad), P(good)] rows → score of the last step in [-1, 1]."""
    if not per_step:
        raise ValueError("the PRM returned no step scores (is the step tag in its vocabulary?)")
    return 2.0 * float(per_step[-1][-1]) - 1.0
