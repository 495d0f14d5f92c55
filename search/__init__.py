"""Test-time search over code-augmented reasoning steps. Pure logic: no HTTP, engines or jails.

`search/` talks to the outside only through the protocols in `search.protocols`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from search.baselines import best_of_n, greedy, self_consistency
from search.beam import beam_search
from search.budget import Budget, Usage
from search.config import Components, SearchConfig, SearchProgress, SearchSettings
from search.mcts import mcts
from search.particles import particle_filtering
from search.result import SearchResult

Algorithm = Literal[
    "mcts", "best_of_n", "self_consistency", "greedy", "beam_search", "particle_filtering"
]

ALGORITHMS: dict[str, Callable[..., Awaitable[SearchResult]]] = {
    "mcts": mcts,
    "best_of_n": best_of_n,
    "self_consistency": self_consistency,
    "greedy": greedy,
    "beam_search": beam_search,
    "particle_filtering": particle_filtering,
}


async def run_search(
    algorithm: Algorithm,
    problem: str,
    components: Components,
    budget: Budget | None = None,
    config: SearchConfig | None = None,
    gold: str | None = None,
) -> SearchResult:
    """Run one of the algorithms on the same components and budget."""
    try:
        fn = ALGORITHMS[algorithm]
    except KeyError:
        raise ValueError(
            f"unknown algorithm {algorithm!r}; choose one of {sorted(ALGORITHMS)}"
        ) from None
    return await fn(problem, components, budget, config, gold)


__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "Budget",
    "Components",
    "SearchConfig",
    "SearchProgress",
    "SearchResult",
    "SearchSettings",
    "Usage",
    "run_search",
]
