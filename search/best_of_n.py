"""Best-of-N: N sampled chains, the answer of the one the reward model scores highest.

Without a reward model the ranking falls back to answer agreement, and the result's
`reward_source` says so.
"""

from __future__ import annotations

from search.budget import Budget
from search.chains import sample_chains
from search.config import Components, SearchConfig
from search.expand import Expander
from search.result import SearchResult, build_result


async def best_of_n(
    problem: str,
    components: Components,
    budget: Budget | None = None,
    config: SearchConfig | None = None,
    gold: str | None = None,
) -> SearchResult:
    budget = budget or Budget()
    ex = Expander(problem, components, budget, config or SearchConfig(), gold)
    stopped = await sample_chains(ex, budget.rollouts)
    winner, groups = ex.judge.choose(ex.tree, "best")
    return build_result(
        "best_of_n", ex.tree, ex.judge, winner, groups, ex.tracker.finish(), stopped
    )
