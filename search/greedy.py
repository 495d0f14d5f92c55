"""Greedy decoding: one chain at temperature 0, executed step by step like every other chain."""

from __future__ import annotations

from search.budget import Budget
from search.chains import sample_chains
from search.config import Components, SearchConfig
from search.expand import Expander
from search.result import SearchResult, build_result


async def greedy(
    problem: str,
    components: Components,
    budget: Budget | None = None,
    config: SearchConfig | None = None,
    gold: str | None = None,
) -> SearchResult:
    ex = Expander(problem, components, budget or Budget(), config or SearchConfig(), gold)
    stopped = await sample_chains(ex, 1, temperature=0.0)
    winner, groups = ex.judge.choose(ex.tree, "best")
    return build_result("greedy", ex.tree, ex.judge, winner, groups, ex.tracker.finish(), stopped)
