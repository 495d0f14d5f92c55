"""When the answer is settled: the rules by which a budget's `stop_when` ends a search early.

Both read the vote as it stands, how many terminals reached each answer (the judge's clusters of
equivalent answers, one terminal one vote), and the most terminals the search could still make:

  unbeatable  the leader has more votes than the runner-up could reach with every terminal still
              to come, so no outcome of the rest could change the vote (a possible tie is not
              settled);
  confident   that, or Adaptive-Consistency's Beta rule (Aggarwal et al., EMNLP 2023; its_hub's
              BetaSelfConsistency): under a uniform prior the leader's share of the top two
              answers' votes is Beta(1 + v1, 1 + v2), and the answer is settled once
              P(share > 1/2) reaches the threshold. The top two and not the leader against all
              others: the vote is decided between them, and wrong answers that scatter should
              not keep a clear leader sampling.

The rules read agreement whatever the algorithm's final choice. Where the answer is the vote
(self-consistency, and every algorithm without a reward model) `unbeatable` returns the answer
the whole budget would have; where a reward model's scores choose, agreement among the terminals
is the evidence that the answer is settled, and a terminal not sampled could have scored higher.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

StopWhen = Literal["budget", "unbeatable", "confident"]


def top_two(votes: Sequence[int]) -> tuple[int, int]:
    """The leader's and the runner-up's votes (0 where there is none)."""
    ranked = sorted(votes, reverse=True)
    return (ranked[0] if ranked else 0), (ranked[1] if len(ranked) > 1 else 0)


def unbeatable(votes: Sequence[int], remaining: int) -> bool:
    """The leader stays ahead, strictly, however the `remaining` terminals answer."""
    leader, runner_up = top_two(votes)
    return leader > runner_up + remaining


def leader_probability(leader: int, runner_up: int) -> float:
    """P(p > 1/2) for p ~ Beta(1 + leader, 1 + runner_up), exactly: with whole parameters the
    Beta's tail is a binomial one, P(Binomial(leader + runner_up + 1, 1/2) <= leader)."""
    n = leader + runner_up + 1
    return sum(math.comb(n, k) for k in range(leader + 1)) / 2**n


def settled(rule: StopWhen, votes: Sequence[int], remaining: int, confidence: float) -> bool:
    """Whether `rule` says the vote is decided, with at most `remaining` more terminals to come.
    Never with `budget`, nor when nothing remains (there is nothing left to save)."""
    if rule == "budget" or remaining <= 0:
        return False
    if unbeatable(votes, remaining):
        return True
    return rule == "confident" and leader_probability(*top_two(votes)) >= confidence


def tokens_saved(per_rollout: float, rollouts: int, spent: int, max_tokens: int | None) -> int:
    """An estimate of what stopping early saved: `rollouts` (the budget's) at `per_rollout`
    tokens each, never more than the token budget, less what was spent."""
    whole = per_rollout * rollouts
    if max_tokens is not None:
        whole = min(whole, max_tokens)
    return max(0, round(whole - spent))
