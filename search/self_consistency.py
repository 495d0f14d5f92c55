"""Self-consistency: N sampled chains, majority vote over their (equivalent) answers."""

from __future__ import annotations

from search.budget import Budget
from search.chains import sample_chains
from search.config import Components, SearchConfig
from search.expand import Expander
from search.result import SearchResult, build_result


async def self_consistency(
    problem: str,
    components: Components,
    budget: Budget | None = None,
    config: SearchConfig | None = None,
    gold: str | None = None,
) -> SearchResult:
    budget = budget or Budget()
    ex = Expander(problem, components, budget, config or SearchConfig(), gold)
    stopped = await sample_chains(ex, budget.rollouts)
    winner, groups = ex.judge.choose(ex.tree, "vote")
    return build_result(
        "self_consistency", ex.tree, ex.judge, winner, groups, ex.tracker.finish(), stopped
    )
