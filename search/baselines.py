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

With a `stop_when` rule, self-consistency and best-of-N stop once the vote over the finished
chains is settled (search.settle): every chain not yet finished may still add one vote.
"""

from __future__ import annotations

from dataclasses import replace

from search.budget import Budget, BudgetTimeout, StopReason, deadline
from search.config import Components, SearchConfig
from search.expand import Expander
from search.judge import ChoiceMethod
from search.result import SearchResult, build_result
from search.tree import Node

# chains in flight at once under a token budget or a stop rule: enough for batched calls, few
# enough that the budget is not spent on chains cut off half-way or started after the answer
# settled
TOKEN_BUDGET_WIDTH = 4


async def sample_chains(ex: Expander, n: int, temperature: float | None = None) -> StopReason:
    """Grow `n` chains (at most the rollout budget) until each ends or the budget runs out.

    With no token budget all `n` start at once. Under one, chains start `TOKEN_BUDGET_WIDTH` at
    a time, and a new one only while the tokens left cover the chains in flight and one more at
    the mean length of those finished: as many chains as fit, few cut short. Under a stop rule
    they start `TOKEN_BUDGET_WIDTH` at a time too, so that a settled vote ends the search before
    the rest start (chains that all start together finish together)."""
    tracker, tree = ex.tracker, ex.tree
    n = min(n, tracker.budget.rollouts)
    cap = tracker.budget.max_tokens
    adaptive = tracker.budget.stop_when != "budget"
    width = n if cap is None and not adaptive else min(n, TOKEN_BUDGET_WIDTH)
    finished_tokens: list[int] = []
    tips: list[Node] = []
    try:
        while True:
            if (stopped := tracker.stop_reason()) is not None:
                return stopped
            new = 0
            while tracker.started_rollouts < n and len(tips) + new < width:
                if cap is not None and finished_tokens:
                    mean = sum(finished_tokens) / len(finished_tokens)
                    if tracker.usage.tokens + (len(tips) + new + 1) * mean > cap:
                        break
                tracker.start_rollout()
                new += 1
            if not tips and not new:
                return "finished" if tracker.started_rollouts >= n else "max_tokens"
            items = [(t, 1) for t in tips] + ([(tree.root, new)] if new else [])
            async with deadline(tracker):
                children = await ex.expand(items, temperature, dedup=False)
            by_parent: dict[int | None, Node] = {}
            for c in children:
                by_parent.setdefault(c.parent, c)
            grown = [by_parent[t.id] for t in tips if t.id in by_parent]
            grown += [c for c in children if c.parent == tree.root.id]
            tips = []
            for tip in grown:
                if tip.status == "open":
                    tips.append(tip)
                    continue
                if tip.status == "terminal":
                    tree.backup(tip, tip.reward if tip.reward is not None else -1.0)
                tracker.usage.rollouts += 1
                finished_tokens.append(sum(x.tokens for x in tree.path(tip)))
            ex.report()
            left = tips or tracker.started_rollouts < n
            if left and ex.settled(n - tracker.usage.rollouts):
                return tracker.settled(sum(finished_tokens) / len(finished_tokens), n)
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
