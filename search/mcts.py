"""Monte Carlo Tree Search over code-augmented steps, after rStar-Math.

A rollout descends from the root by UCT, expanding each unexpanded node it meets into
`candidates` children (duplicates dropped, failing code dropped), until it reaches a terminal
step; the terminal's reward is backed up along the path. Invalid steps (code error, no answer,
too deep) count -1 on themselves only and are never selected.

`parallel_rollouts` rollouts are in flight at once. Each one adds a virtual visit that loses
to every node it passes, so concurrent rollouts spread over different branches; every wave,
the nodes they need expanded go to the policy as one batch.

With a reward model, each new non-terminal step starts with one visit worth its score
(rStar-Math's PPM-augmented Q initialisation), so UCT follows the PPM from the start.

Generating training data (a gold answer given), `config.unsolved_rollouts` lets a problem with
no correct terminal after the budget's rollouts go on to that many: more rollouts where they
find new SFT data, instead of on every problem.
"""

from __future__ import annotations

from search.budget import Budget, BudgetTimeout, StopReason, Tracker, deadline
from search.config import Components, SearchConfig
from search.expand import Expander
from search.result import SearchResult, build_result
from search.tree import Node, Tree, uct


def select_child(parent: Node, children: list[Node], c: float, virtual_loss: float) -> Node | None:
    """Highest UCT among children still worth exploring; unvisited ones first, by PRM score."""
    best, best_key = None, None
    for i, child in enumerate(children):
        if child.exhausted:
            continue
        key = (
            uct(child, parent, c, virtual_loss),
            child.prm_score if child.prm_score is not None else 0.0,
            -i,
        )
        if best_key is None or key > best_key:
            best, best_key = child, key
    return best


def extend_unsolved(tracker: Tracker, tree: Tree, config: SearchConfig, gold: str | None) -> bool:
    """Raise the rollout limit to `config.unsolved_rollouts` (once) when a gold answer was given
    and no terminal is correct yet. True if the search may go on."""
    limit = config.unsolved_rollouts
    if gold is None or limit is None or tracker.rollout_limit >= limit:
        return False
    if any(n.correct is True for n in tree.terminals()):
        return False
    tracker.rollout_limit = limit
    return True


async def mcts(
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
    root = tree.root
    cursors: list[Node] = []  # the deepest node of each rollout in flight
    stopped: StopReason | None = None

    def finish(leaf: Node, value: float | None) -> None:
        if value is None:
            tree.release(leaf)
        else:
            tree.backup(leaf, value)
        tracker.usage.rollouts += 1

    try:
        while True:
            stopped = tracker.stop_reason()
            if stopped:
                break
            while len(cursors) < config.parallel_rollouts and tracker.can_start_rollout():
                if root.exhausted:
                    break
                tracker.start_rollout()
                root.virtual += 1
                cursors.append(root)
            if not cursors:
                if not root.exhausted and extend_unsolved(tracker, tree, config, gold):
                    continue
                stopped = "exhausted" if root.exhausted else "rollouts"
                break

            # Descend each rollout to a node that needs expanding, or to its end.
            to_expand: dict[int, Node] = {}
            still: list[Node] = []
            for node in cursors:
                while node.status == "expanded":
                    child = select_child(
                        node, tree.children(node), config.c_uct, config.virtual_loss
                    )
                    if child is None:  # every child is exhausted or invalid: a dead end
                        tree.exhaust(node)
                        break
                    child.virtual += 1
                    node = child
                if node.status == "terminal":
                    finish(node, node.reward)
                    tree.exhaust(node)
                elif node.status == "open":
                    to_expand[node.id] = node
                    still.append(node)
                else:
                    finish(node, None)
            cursors = still
            if not to_expand:
                continue

            async with deadline(tracker):
                children = await ex.expand([(n, config.candidates) for n in to_expand.values()])
            if components.reward_model is not None:
                for child in children:
                    if child.status == "open" and child.prm_score is not None:
                        child.visits, child.value_sum = 1, child.prm_score
            ex.report()
    except BudgetTimeout:
        stopped = "time_limit_s"
    ex.report()  # the final count (the last wave's rollouts finish after its report)

    method = "weighted_vote" if config.vote_top_k else "best"
    winner, groups = ex.judge.choose(tree, method, config.vote_top_k)
    return build_result(
        "mcts", tree, ex.judge, winner, groups, tracker.finish(), stopped or "finished"
    )
