"""The baselines MCTS is measured against, on the same protocols, tree and budget accounting.

All three grow independent step-by-step chains from the root: every wave, each live chain
continues its last step with one sample (all chains batched in one policy call), and a chain
ends at a terminal or an invalid step. Terminal rewards are backed up along each chain, so
their trees read like MCTS's.

  greedy            one chain at temperature 0;
  best_of_n         N chains, the one the reward model scores highest (answer agreement when
                    there is no reward model, and `reward_source` says so);
  self_consistency  N chains, majority vote over equivalent answers.

Greedy and best-of-N read only the final step's score, so only terminals are scored (a third of
the reward model's work on 3-step chains); self-consistency is a vote and never calls it.
"""

from __future__ import annotations

from dataclasses import replace

from search.budget import Budget, BudgetTimeout, StopReason, deadline
from search.config import Components, SearchConfig
from search.expand import Expander
from search.judge import ChoiceMethod
from search.result import SearchResult, build_result
from search.tree import Node


async def sample_chains(ex: Expander, n: int, temperature: float | None = None) -> StopReason:
    """Grow `n` chains (at most the rollout budget) until each ends or the budget runs out."""
    tracker, tree = ex.tracker, ex.tree
    n = min(n, tracker.budget.rollouts)
    try:
        if (stopped := tracker.stop_reason()) is not None:
            return stopped
        for _ in range(n):
            tracker.start_rollout()
        async with deadline(tracker):
            tips = await ex.expand([(tree.root, n)], temperature, dedup=False)
        while True:
            for tip in [t for t in tips if t.status != "open"]:
                if tip.status == "terminal":
                    tree.backup(tip, tip.reward if tip.reward is not None else -1.0)
                tracker.usage.rollouts += 1
            ex.report()
            tips = [t for t in tips if t.status == "open"]
            if not tips:
                return "finished"
            if (stopped := tracker.stop_reason()) is not None:
                return stopped
            async with deadline(tracker):
                children = await ex.expand([(t, 1) for t in tips], temperature, dedup=False)
            by_parent: dict[int | None, Node] = {c.parent: c for c in children}
            tips = [by_parent[t.id] for t in tips if t.id in by_parent]
    except BudgetTimeout:
        return "time_limit_s"


async def _chains(
    name: str,
    method: ChoiceMethod,
    problem: str,
    components: Components,
    budget: Budget | None,
    config: SearchConfig | None,
    gold: str | None,
    n: int | None = None,
    temperature: float | None = None,
) -> SearchResult:
    budget = budget or Budget()
    if method == "vote":
        components = replace(components, reward_model=None)
    ex = Expander(problem, components, budget, config or SearchConfig(), gold, score="terminals")
    stopped = await sample_chains(ex, budget.rollouts if n is None else n, temperature)
    winner, groups = ex.judge.choose(ex.tree, method)
    return build_result(name, ex.tree, ex.judge, winner, groups, ex.tracker.finish(), stopped)


async def greedy(
    problem: str,
    components: Components,
    budget: Budget | None = None,
    config: SearchConfig | None = None,
    gold: str | None = None,
) -> SearchResult:
    return await _chains("greedy", "best", problem, components, budget, config, gold, 1, 0.0)


async def best_of_n(
    problem: str,
    components: Components,
    budget: Budget | None = None,
    config: SearchConfig | None = None,
    gold: str | None = None,
) -> SearchResult:
    return await _chains("best_of_n", "best", problem, components, budget, config, gold)


async def self_consistency(
    problem: str,
    components: Components,
    budget: Budget | None = None,
    config: SearchConfig | None = None,
    gold: str | None = None,
) -> SearchResult:
    return await _chains("self_consistency", "vote", problem, components, budget, config, gold)
