"""The search tree: every node's text, code, execution result, statistics and scores.

Nodes live in a flat list and point to each other by id, so a tree serialises to plain JSON
(and back) for training-data extraction and drawing, with no recursion limits.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from pydantic import TypeAdapter

NodeStatus = Literal["open", "expanded", "terminal", "invalid"]
"""open: a valid step (or the root) not yet expanded; expanded: has children; terminal: a final
step with an answer; invalid: dropped (malformed, code error, too deep, no answer), never
selected."""


@dataclass(slots=True)
class Node:
    id: int
    parent: int | None
    depth: int
    status: NodeStatus = "open"
    final: bool = False  # ends the code (<end_of_code>)
    text: str = ""  # rendered text as it re-enters the prompt
    reasoning: str = ""
    code: str = ""
    output: str | None = None  # stdout of the path's code (clipped), when it ran
    error: str | None = None  # why the node is invalid
    answer_text: str | None = None
    answer: str | None = None
    tokens: int = 0  # generated tokens spent on this node (step + answer)
    prm_score: float | None = None  # reward model's score of the step
    reward: float | None = None  # terminal reward (gold check, reward model, or agreement)
    correct: bool | None = None  # when a gold answer was given
    visits: int = 0
    value_sum: float = 0.0
    virtual: int = 0  # rollouts in flight through this node (0 once a search ends)
    exhausted: bool = False  # nothing left to explore below
    expansions: int = 0  # times the policy was sampled for this node's children
    children: list[int] = field(default_factory=list)

    @property
    def q(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0


@dataclass(slots=True)
class Tree:
    problem: str
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.nodes:
            self.nodes.append(Node(id=0, parent=None, depth=0))

    @property
    def root(self) -> Node:
        return self.nodes[0]

    def add(self, parent: Node, **fields: object) -> Node:
        node = Node(id=len(self.nodes), parent=parent.id, depth=parent.depth + 1, **fields)  # type: ignore[arg-type]
        self.nodes.append(node)
        parent.children.append(node.id)
        return node

    def children(self, node: Node) -> list[Node]:
        return [self.nodes[i] for i in node.children]

    def path(self, node: Node) -> list[Node]:
        """Nodes from the root's first step down to `node` (the root itself excluded)."""
        out: list[Node] = []
        while node.parent is not None:
            out.append(node)
            node = self.nodes[node.parent]
        out.reverse()
        return out

    def terminals(self) -> list[Node]:
        return [n for n in self.nodes if n.status == "terminal"]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def backup(self, leaf: Node, value: float, release: bool = True) -> None:
        """Add one visit with `value` to every node from the root to `leaf`; `release`: also
        undo the virtual visit a rollout placed on each (not for an outcome backed up when it
        is created, which no rollout walked to)."""
        node: Node | None = leaf
        while node is not None:
            node.visits += 1
            node.value_sum += value
            if release:
                node.virtual = max(0, node.virtual - 1)
            node = self.nodes[node.parent] if node.parent is not None else None

    def release(self, leaf: Node) -> None:
        """Undo a rollout's virtual visits without counting it (dead end, abandoned)."""
        node: Node | None = leaf
        while node is not None:
            node.virtual = max(0, node.virtual - 1)
            node = self.nodes[node.parent] if node.parent is not None else None

    def exhaust(self, node: Node, max_expansions: int = 1) -> None:
        """Mark `node` as fully explored and propagate upwards: a parent is exhausted once all
        its children are (invalid children are exhausted from birth) and it has been expanded
        `max_expansions` times (before that it may be sampled for more children)."""
        node.exhausted = True
        while node.parent is not None:
            parent = self.nodes[node.parent]
            if (
                parent.exhausted
                or parent.expansions < max_expansions
                or not all(self.nodes[c].exhausted for c in parent.children)
            ):
                return
            parent.exhausted = True
            node = parent

    def clear_virtual(self) -> None:
        for n in self.nodes:
            n.virtual = 0

    def to_dict(self) -> dict:
        """JSON-ready plain data (for embedding in a response)."""
        return _TREE.dump_python(self, mode="json")

    def to_json(self, indent: int | None = None) -> str:
        return _TREE.dump_json(self, indent=indent).decode()

    @classmethod
    def from_json(cls, data: str | bytes) -> Tree:
        return _TREE.validate_json(data)


_TREE = TypeAdapter(Tree)
_NODE = TypeAdapter(Node)


def node_dict(node: Node) -> dict:
    """One node as `Tree.to_dict` writes it (what a tree view reads, live or saved)."""
    return _NODE.dump_python(node, mode="json")


def uct(child: Node, parent: Node, c: float, virtual_loss: float) -> float:
    """Q + c·sqrt(ln N_parent / N), with in-flight rollouts counted as visits that lost. A child
    never visited (no reward model to give it a first value) is +∞: each is tried once."""
    n = child.visits + child.virtual
    if n == 0:
        return math.inf
    q = (child.value_sum - virtual_loss * child.virtual) / n
    parent_n = max(parent.visits + parent.virtual, 1)
    return q + c * math.sqrt(math.log(parent_n) / n)
