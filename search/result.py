"""What every search algorithm returns: the answer, its trajectory, alternatives, spending, tree."""

from __future__ import annotations

from pydantic import BaseModel

from search.budget import StopReason, Usage
from search.judge import Judge, RewardSource
from search.tree import Node, Tree


class StepView(BaseModel):
    node_id: int
    reasoning: str
    code: str
    output: str | None = None
    prm_score: float | None = None
    q: float
    visits: int


class AnswerGroup(BaseModel):
    answer: str
    count: int
    score: float
    weight: float
    node_ids: list[int]


class SearchResult(BaseModel):
    algorithm: str
    problem: str
    answer: str | None
    answer_text: str | None = None
    score: float | None = None
    correct: bool | None = None  # only when a gold answer was given
    reward_source: RewardSource
    steps: list[StepView]
    alternatives: list[AnswerGroup]
    usage: Usage
    stopped_by: StopReason
    tree: Tree


def step_view(node: Node) -> StepView:
    return StepView(
        node_id=node.id,
        reasoning=node.reasoning,
        code=node.code,
        output=node.output,
        prm_score=node.prm_score,
        q=round(node.q, 6),
        visits=node.visits,
    )


def build_result(
    algorithm: str,
    tree: Tree,
    judge: Judge,
    winner: Node | None,
    groups: list,
    usage: Usage,
    stopped_by: StopReason,
) -> SearchResult:
    tree.clear_virtual()
    return SearchResult(
        algorithm=algorithm,
        problem=tree.problem,
        answer=winner.answer if winner else None,
        answer_text=winner.answer_text if winner else None,
        score=judge.score(winner) if winner else None,
        correct=winner.correct if winner else None,
        reward_source=judge.source,
        steps=[step_view(n) for n in tree.path(winner)] if winner else [],
        alternatives=[
            AnswerGroup(
                answer=c.answer,
                count=len(c.node_ids),
                score=round(score, 6),
                weight=round(weight, 6),
                node_ids=list(c.node_ids),
            )
            for c, score, weight in groups
        ],
        usage=usage,
        stopped_by=stopped_by,
        tree=tree,
    )
