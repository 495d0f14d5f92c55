"""Step-level beam search (search-and-learn's, OpenR's): keep the best few partial solutions,
extend each by several candidate steps, keep the best few again.

With a rollout budget N and `config.candidates` = M expansions per beam, the beam holds
W = max(1, N // M) partial trajectories; every wave each live beam gets M candidate next steps
(all beams in one batched policy call, code verified like every step), and the W best of the
valid candidates survive. Steps are ranked by the reward model's score of the step (the PPM);
without one, valid steps keep their sampling order, and the answer is chosen by agreement
among the finished ones. A finished (terminal) candidate leaves the beam as one rollout; the
search ends when N trajectories have finished or died, nothing is left to extend, or the budget
(tokens, time) runs out. With a `stop_when` rule it also ends once the vote over the finished
trajectories is settled (search.settle).
"""

from __future__ import annotations

from search.budget import Budget, BudgetTimeout, StopReason, deadline
from search.config import Components, SearchConfig
from search.expand import Expander
from search.result import SearchResult, build_result
from search.tree import Node


def rank(candidates: list[Node]) -> list[Node]:
    """Open candidates best first: by PPM score when there is one, else in sampling order."""
    return sorted(candidates, key=lambda n: -(n.prm_score if n.prm_score is not None else 0.0))


def terminals_left(rollouts: int, finished: int, width: int, per_beam: int) -> int:
    """The most terminals the rest of the search could make: waves go on while fewer than
    `rollouts` trajectories have finished, and the last may finish every candidate of its beams
    (at most `width` of them, and no more than the trajectories still to finish)."""
    return rollouts - finished - 1 + min(width, rollouts - finished) * per_beam


async def beam_search(
    problem: str,
    components: Components,
    budget: Budget | None = None,
    config: SearchConfig | None = None,
    gold: str | None = None,
) -> SearchResult:
    budget = budget or Budget()
    config = config or SearchConfig()
    ex = Expander(problem, components, budget, config, gold)
    tree, tracker = ex.tree, ex.tracker
    per_beam = max(1, config.candidates)
    width = max(1, budget.rollouts // per_beam)
    beams: list[Node] = [tree.root]
    stopped: StopReason = "finished"
    for _ in range(budget.rollouts):
        tracker.start_rollout()
    try:
        while beams:
            if (reason := tracker.stop_reason()) is not None:
                stopped = reason
                break
            async with deadline(tracker):
                children = await ex.expand([(b, per_beam) for b in beams], dedup=True)
            for node in children:
                if node.status == "terminal":
                    tree.backup(node, node.reward if node.reward is not None else -1.0)
                    tracker.usage.rollouts += 1
            survivors = rank([c for c in children if c.status == "open"])
            ended = tracker.usage.rollouts >= budget.rollouts
            beams = (
                [] if ended else survivors[: min(width, budget.rollouts - tracker.usage.rollouts)]
            )
            for dropped in survivors[len(beams) :]:
                tree.exhaust(dropped)  # pruned: never extended
            ex.report()
            finished = tracker.usage.rollouts
            if beams and ex.settled(terminals_left(budget.rollouts, finished, width, per_beam)):
                stopped = tracker.settled(tracker.usage.tokens / finished, budget.rollouts)
                break
    except BudgetTimeout:
        stopped = "time_limit_s"
    winner, groups = ex.judge.choose(tree, "best" if components.reward_model else "vote")
    return build_result("beam_search", tree, ex.judge, winner, groups, tracker.finish(), stopped)
