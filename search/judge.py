"""Terminal rewards and the final choice among finished trajectories.

Reward of a terminal step, by what is available:
  gold answer given      -> +1 if the answer matches it, else -1 (training rounds);
  reward model present   -> its score of the final step (inference);
  neither                -> agreement: 2·(share of terminals so far with the same answer) - 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from search.grading import Grader
from search.tree import Node, Tree

RewardSource = Literal["gold", "reward_model", "agreement"]
ChoiceMethod = Literal["best", "vote", "weighted_vote"]


@dataclass
class Cluster:
    """Terminals whose answers are equivalent (compared against the first one's answer)."""

    answer: str
    node_ids: list[int] = field(default_factory=list)


class Judge:
    def __init__(self, grader: Grader, gold: str | None, has_reward_model: bool) -> None:
        self.grader = grader
        self.gold = gold
        self.source: RewardSource = (
            "gold" if gold is not None else "reward_model" if has_reward_model else "agreement"
        )
        self.clusters: list[Cluster] = []
        self._cluster_of: dict[int, Cluster] = {}
        self._count = 0

    async def _assign(self, node: Node) -> Cluster:
        assert node.answer is not None
        for cluster in self.clusters:
            if await self.grader.aequal(cluster.answer, node.answer):
                break
        else:
            cluster = Cluster(node.answer)
            self.clusters.append(cluster)
        cluster.node_ids.append(node.id)
        self._cluster_of[node.id] = cluster
        self._count += 1
        return cluster

    async def add_terminals(self, nodes: list[Node]) -> None:
        """Set `reward` (and `correct`, with a gold answer) on newly finished terminals."""
        for node in nodes:
            cluster = await self._assign(node)
            if self.gold is not None:
                node.correct = await self.grader.aequal(self.gold, node.answer or "")
                node.reward = 1.0 if node.correct else -1.0
            elif self.source == "reward_model":
                node.reward = node.prm_score if node.prm_score is not None else 0.0
            else:
                node.reward = 2.0 * len(cluster.node_ids) / self._count - 1.0

    def score(self, node: Node) -> float:
        """Final score of a terminal; agreement is re-read over all terminals found."""
        if self.source == "agreement":
            return 2.0 * len(self._cluster_of[node.id].node_ids) / max(self._count, 1) - 1.0
        return node.reward if node.reward is not None else -1.0

    def _key(self, node: Node) -> tuple[float, float, int]:
        return (self.score(node), node.q, -node.id)

    def choose(
        self, tree: Tree, method: ChoiceMethod = "best", top_k: int | None = None
    ) -> tuple[Node | None, list[tuple[Cluster, float, float]]]:
        """The winning terminal and, per answer cluster, (cluster, best score, vote weight)."""
        terminals = [n for n in tree.terminals() if n.id in self._cluster_of]
        if not terminals:
            return None, []
        ranked = sorted(terminals, key=self._key, reverse=True)
        voters = ranked[:top_k] if (method != "best" and top_k) else ranked
        weight: dict[int, float] = {}
        for node in voters:
            cid = id(self._cluster_of[node.id])
            if method == "vote":
                weight[cid] = weight.get(cid, 0.0) + 1.0
            else:  # scores live in [-1, 1]; shift so every vote counts for something >= 0
                weight[cid] = weight.get(cid, 0.0) + (self.score(node) + 1.0) / 2.0
        best_in = {}
        for node in ranked:  # first seen = best of its cluster
            best_in.setdefault(id(self._cluster_of[node.id]), node)
        if method == "best":
            winner = ranked[0]
        else:
            cid = max(weight, key=lambda k: (weight[k], self._key(best_in[k])))
            winner = best_in[cid]
        groups = [
            (c, self.score(best_in[id(c)]), weight.get(id(c), 0.0))
            for c in self.clusters
            if id(c) in best_in
        ]
        groups.sort(key=lambda g: (g[0] is self._cluster_of[winner.id], g[2], g[1]), reverse=True)
        return winner, groups
