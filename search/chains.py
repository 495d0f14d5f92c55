"""Independent step-by-step chains from the root: the sampler under the three baselines.

Each chain continues its own last step with one sample per wave (all live chains batched in
one policy call); a chain ends at a terminal or an invalid step. Chains are kept in the same
tree as MCTS's, with terminal rewards backed up along them, so results and budgets compare.
"""

from __future__ import annotations

from search.budget import BudgetTimeout, StopReason, deadline
from search.expand import Expander
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
