"""What a finished search tree says about where its budget went.

Small enough to keep one record per searched problem: the node counts by fate, why steps were
dropped, how deep the search got and which distinct answers it reached, so an evaluation can
tell a policy that writes broken steps from a search that finds the right answer and then
does not pick it, and another final choice can be tried without searching again.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from search.budget import Usage
from search.tree import Node, Tree


def invalid_kind(error: str | None) -> str:
    """The family of a dropped step's error: the text before its first colon ("malformed",
    "syntax", "runtime", "timeout", "too deep", "no answer", a sandbox kill)."""
    return (error or "unknown").split(":", 1)[0].strip() or "unknown"


def tree_stats(tree: Tree, usage: Usage) -> dict[str, Any]:
    """Counts over the steps a search generated (the root excluded). `duplicates` are the
    generations dropped before they became nodes, as repeats of a sibling."""
    steps = [n for n in tree if n.parent is not None]
    invalid = [n for n in steps if n.status == "invalid"]
    terminals = [n for n in steps if n.status == "terminal"]
    answers = Counter(n.answer for n in terminals if n.answer is not None)
    return {
        "steps": len(steps),
        "invalid": len(invalid),
        "invalid_by_kind": dict(Counter(invalid_kind(n.error) for n in invalid).most_common()),
        "duplicates": usage.duplicates,
        "terminals": len(terminals),
        "max_depth": max((n.depth for n in steps), default=0),
        "candidates": dict(answers.most_common()),
        # each terminal's answer, reward (the reward model's score, at inference) and Q: enough
        # to re-decide the final choice offline (benchmarks/final_choice.py)
        "terminal_scores": [
            [n.answer, _r(n.reward), _r(n.q)] for n in terminals if n.answer is not None
        ],
        # every step that ended a path, in the order made: its answer (None for a dropped
        # step), depth and the tokens of its path. For chain searches, one entry a chain: enough
        # to replay a stop rule on a run spent in full (benchmarks/settle_replay.py)
        "ends": [
            [n.answer if n.status == "terminal" else None, n.depth, _path_tokens(tree, n)]
            for n in steps
            if n.status in ("terminal", "invalid")
        ],
    }


def _path_tokens(tree: Tree, node: Node) -> int:
    return sum(x.tokens for x in tree.path(node))


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
