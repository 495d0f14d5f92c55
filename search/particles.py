"""Particle filtering over steps (its_hub's method; Puri et al. 2025, arXiv 2502.01618): N
partial solutions ("particles") advance one step at a time and are resampled by their reward
model scores, so the budget follows the promising ones without discarding the rest outright.

Every wave each live particle is extended by one sampled step (one batched policy call; copies
of the same particle sample distinct continuations of it). The live particles are then drawn
again, N_live of them with replacement, with probabilities softmax(score / temperature) over
their PPM scores (`config.particle_temperature`); a particle whose step failed gets no
weight, a finished one leaves as one rollout. Without a reward model every weight is equal
and the search is N independent chains, answered by agreement. The winner is the finished
particle with the best score (the vote without a PPM). With a `stop_when` rule the search also
ends once the vote over the finished particles is settled (search.settle): each live particle
may still finish once.
"""

from __future__ import annotations

import math
import random

from search.budget import Budget, BudgetTimeout, StopReason, deadline
from search.config import Components, SearchConfig
from search.expand import Expander
from search.result import SearchResult, build_result
from search.tree import Node, Tree


def resample(particles: list[Node], temperature: float, rng: random.Random) -> list[Node]:
    """As many draws as particles, with replacement, by softmax(prm_score / temperature)."""
    if not particles:
        return []
    scores = [p.prm_score if p.prm_score is not None else 0.0 for p in particles]
    top = max(scores)
    weights = [math.exp((s - top) / max(temperature, 1e-6)) for s in scores]
    return rng.choices(particles, weights=weights, k=len(particles))


def ended_path_tokens(tree: Tree) -> float:
    """The mean tokens along the path of a particle that ended (finished or died): what one
    particle costs, where the search's total also holds the live ones' partial paths."""
    ended = [n for n in tree if n.status in ("terminal", "invalid")]
    return sum(x.tokens for n in ended for x in tree.path(n)) / len(ended)


async def particle_filtering(
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
    rng = random.Random(config.seed)
    n = budget.rollouts
    for _ in range(n):
        tracker.start_rollout()
    particles: list[Node] = [tree.root] * n
    stopped: StopReason = "finished"
    try:
        while particles:
            if (reason := tracker.stop_reason()) is not None:
                stopped = reason
                break
            copies: dict[int, int] = {}
            for p in particles:
                copies[p.id] = copies.get(p.id, 0) + 1
            async with deadline(tracker):
                children = await ex.expand(
                    [(tree.nodes[i], k) for i, k in copies.items()], dedup=False
                )
            live = []
            for node in children:
                if node.status == "terminal":
                    tree.backup(node, node.reward if node.reward is not None else -1.0)
                    tracker.usage.rollouts += 1
                elif node.status == "invalid":
                    tracker.usage.rollouts += 1  # a dead particle
                else:
                    live.append(node)
            particles = resample(live, config.particle_temperature, rng)
            ex.report()
            if particles and ex.settled(len(particles)):
                stopped = tracker.settled(ended_path_tokens(tree), n)
                break
    except BudgetTimeout:
        stopped = "time_limit_s"
    winner, groups = ex.judge.choose(tree, "best" if components.reward_model else "vote")
    return build_result(
        "particle_filtering", tree, ex.judge, winner, groups, tracker.finish(), stopped
    )
