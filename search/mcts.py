"""Monte Carlo Tree Search over code-augmented steps, after rStar-Math.

A rollout descends from the root by UCT through non-terminal steps, expanding each unexpanded
node it meets into `candidates` children (duplicates dropped, failing code dropped), until it
reaches a node with nothing left to explore below.

With `max_expansions` > 1 a node whose children are all outcomes or explored out is sampled
again for `candidates` more (progressive widening) instead of closing: with few candidates a
small tree otherwise runs out of places to go long before the budget does.

Outcomes are never selected: a terminal step gets its reward when it is created (the gold
check, the reward model's score, or agreement) and that reward is backed up from it to the
root at once, so every answer found informs Q, whether or not a rollout would have walked to
it. Invalid steps (code error, no answer, too deep) count -1 on themselves only.

With a reward model, each new non-terminal step starts with one visit worth its score
(rStar-Math's PPM-augmented Q initialisation), so UCT follows the PPM among fresh siblings.

`parallel_rollouts` rollouts are in flight at once, each adding a virtual visit that loses to
the nodes it passes so that they spread; the nodes they need expanded go to the policy as one
batch. Keep it small: a rollout only learns from the outcomes of those before it, and batching
comes from the candidates of an expansion and from concurrent searches.

The answer is a vote over the terminals (`final_choice`), by default weighted by their scores:
on trees of train problems whose terminals mix right and wrong answers, the single best-scored
terminal was right less often than a vote.

Generating training data (a gold answer given), `config.unsolved_rollouts` lets a problem with
no correct terminal after the budget's rollouts go on to that many: more rollouts where they
find new SFT data, instead of on every problem.

With a `stop_when` rule the search stops after a wave once the vote over its terminals is
settled (search.settle). A rollout goes on down the tree until nothing is left below it, adding
up to `candidates` terminals at every depth it expands, so `unbeatable` (a guarantee) counts
that many for every rollout in flight or still to start and seldom fires before the budget
ends; `confident` is the rule that saves compute here.
"""

from __future__ import annotations

from search.budget import Budget, BudgetTimeout, StopReason, Tracker, deadline
from search.config import Components, SearchConfig
from search.expand import Expander
from search.result import SearchResult, build_result
from search.tree import Node, Tree, uct


def select_child(parent: Node, children: list[Node], c: float, virtual_loss: float) -> Node | None:
    """Highest UCT among the non-terminal children still worth exploring (ties: the higher PRM
    score, then the first made). Terminals and invalid steps are exhausted from birth."""
    best, best_key = None, None
    for i, child in enumerate(children):
        if child.exhausted or child.status in ("terminal", "invalid"):
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


def terminals_left(tracker: Tracker, config: SearchConfig, in_flight: int, gold: str | None) -> int:
    """The most terminals the rest of the search could make: every rollout in flight or still
    allowed (`unsolved_rollouts` included) may expand one node per depth into `candidates`,
    each up to `max_expansions` times."""
    limit = tracker.rollout_limit
    if gold is not None and config.unsolved_rollouts is not None:
        limit = max(limit, config.unsolved_rollouts)
    rollouts = in_flight + max(0, limit - tracker.started_rollouts)
    return rollouts * config.max_depth * config.candidates * config.max_expansions


def settle(
    tree: Tree, children: list[Node], has_reward_model: bool, max_expansions: int = 1
) -> None:
    """Give a wave's new children their first statistics: a terminal's reward backed up to the
    root (and the terminal closed), a non-terminal step's PRM score as its first visit."""
    for child in children:
        if child.status == "terminal":
            tree.backup(child, child.reward if child.reward is not None else -1.0, release=False)
            tree.exhaust(child, max_expansions)
        elif child.status == "open" and has_reward_model and child.prm_score is not None:
            child.visits, child.value_sum = 1, child.prm_score


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
    # the deepest node of each rollout in flight, and whether that rollout just expanded it
    cursors: list[tuple[Node, bool]] = []
    stopped: StopReason | None = None
    expansions = 0  # nodes sampled so far: their mean cost sizes the next wave

    def end_rollout(node: Node) -> None:
        tree.release(node)
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
                cursors.append((root, False))
            if not cursors:
                if not root.exhausted and extend_unsolved(tracker, tree, config, gold):
                    continue
                stopped = "exhausted" if root.exhausted else "rollouts"
                break

            # Descend each rollout to a node that needs expanding; a rollout with nothing left
            # to explore below it ends. Two rollouts reaching the same node share its expansion.
            # A node with no child left to follow is widened by the next rollout to reach it
            # (while it may be), not by the one whose expansion just closed it.
            to_expand: dict[int, Node] = {}
            still: list[tuple[Node, bool]] = []
            for node, made in cursors:
                widen = False
                while node.status == "expanded":
                    child = select_child(
                        node, tree.children(node), config.c_uct, config.virtual_loss
                    )
                    if child is None:  # every child is terminal, invalid or exhausted
                        if node.expansions >= config.max_expansions:
                            tree.exhaust(node, config.max_expansions)
                        else:
                            widen = not made
                        break
                    child.virtual += 1
                    node, made = child, False
                if not node.exhausted and (node.status == "open" or widen):
                    to_expand[node.id] = node
                    still.append((node, True))
                else:
                    end_rollout(node)
            cursors = still
            if not to_expand:
                continue
            # under a token budget, only the expansions it still covers at their mean cost so
            # far: a search stays within its budget, as the chain algorithms' do
            fit = tracker.affordable(len(to_expand), expansions and ex.usage.tokens / expansions)
            if not fit:
                stopped = "max_tokens"
                break
            wave = list(to_expand.values())[:fit]
            expansions += len(wave)

            async with deadline(tracker):
                children = await ex.expand([(n, config.candidates) for n in wave])
            settle(tree, children, components.reward_model is not None, config.max_expansions)
            ex.report()
            left = 0 if root.exhausted else terminals_left(tracker, config, len(cursors), gold)
            if ex.settled(left):
                stopped = "settled"
                break
    except BudgetTimeout:
        stopped = "time_limit_s"
    for node, _ in cursors:  # cut off by the budget: counted, as far as they got
        end_rollout(node)
    if stopped == "settled":  # every rollout started is counted now
        tracker.settled(tracker.usage.tokens / tracker.usage.rollouts, tracker.rollout_limit)
    ex.report()

    winner, groups = ex.judge.choose(tree, config.final_choice, config.vote_top_k)
    return build_result(
        "mcts", tree, ex.judge, winner, groups, tracker.finish(), stopped or "finished"
    )
