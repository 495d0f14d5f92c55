"""Request and response models of the HTTP API (kept apart from the serving logic)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from annotated_types import Ge
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from search import Algorithm
from search.budget import StopReason, StopWhen, Usage
from search.formats import StepFormatName
from search.judge import RewardSource
from search.result import AnswerGroup, StepView


def integral(v: Any) -> Any:
    """JSON has one number type: 10.0 is the integer 10 (as JSON Schema says), "10" is not."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


JsonInt = Annotated[int, BeforeValidator(integral)]
"""An integer field of a strict model: whole floats pass, strings and booleans do not."""
PositiveJsonInt = Annotated[int, Ge(1), BeforeValidator(integral)]
"""The same, at least 1 (the bound before the validator, so that the schema says `minimum`)."""


class BudgetRequest(BaseModel):
    """What a request may spend; anything left out takes the server's default."""

    model_config = ConfigDict(extra="forbid", strict=True)

    rollouts: PositiveJsonInt | None = Field(None, description="MCTS rollouts / samples")
    max_tokens: PositiveJsonInt | None = Field(None, description="generated tokens in all")
    time_limit_s: float | None = Field(None, gt=0, description="wall-clock seconds")
    stop_when: StopWhen | None = Field(
        None,
        description="stop early once the answer is settled: budget (never), unbeatable (the "
        "leading answer can no longer be overtaken), confident (a Beta posterior puts the "
        "leader ahead with probability settle_confidence)",
    )
    settle_confidence: float | None = Field(
        None, gt=0.5, lt=1, description="the probability stop_when=confident stops at"
    )


# what `\s` matches in a JSON Schema pattern (ECMA-262's white space and line terminators): the
# published schema says a problem matches `\S`, so blank means only these (Python's str.strip
# would also take the control characters \x1c-\x1f and \x85, which the schema allows)
JSON_SCHEMA_SPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)


class SolveRequest(BaseModel):
    # strict: the types the schema promises, no coercion ("cache": 0 is not a boolean)
    model_config = ConfigDict(extra="forbid", strict=True)

    problem: str = Field(..., min_length=1, description="the math problem")
    algorithm: Algorithm = "mcts"
    budget: BudgetRequest = Field(default_factory=BudgetRequest)
    answer: str | None = Field(None, description="gold answer to check the result against")
    return_tree: bool = False
    stream_tree: bool = Field(
        False, description="streamed progress events carry the nodes each wave added or changed"
    )
    cache: bool = Field(
        True, description="reuse and store expansions (false: sample everything afresh)"
    )
    step_format: StepFormatName | None = Field(
        None,
        description="the steps the policy writes: code (rStar-Math's code-augmented steps) or "
        "text (plain steps split at a blank line); unset: the server's (RSTAR_STEP_FORMAT)",
    )

    @field_validator("problem")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip(JSON_SCHEMA_SPACE):
            raise ValueError("the problem is blank")
        return v


class ModelInfo(BaseModel):
    policy: str
    policy_engine: str
    reward_model: str | None
    versions: dict[str, str | None] = Field(
        default_factory=dict, description="what the weights are (keys the expansion cache)"
    )


class SolveResponse(BaseModel):
    answer: str | None
    answer_text: str | None
    score: float | None
    correct: bool | None = Field(None, description="against the request's `answer`, if given")
    reward_source: RewardSource
    algorithm: Algorithm
    step_format: StepFormatName = Field("code", description="the format of the steps")
    steps: list[StepView]
    alternatives: list[AnswerGroup]
    usage: Usage
    stopped_by: StopReason
    models: ModelInfo
    tree: dict[str, Any] | None = None


class ProgressEvent(BaseModel):
    """A streamed `progress` event: where the search stands after a wave."""

    rollouts: int
    rollouts_budget: int
    tokens: int
    nodes: int
    elapsed_s: float
    best_answer: str | None
    best_score: float | None
    tree_nodes: list[dict[str, Any]] | None = Field(
        None,
        description="with `stream_tree`: nodes new or changed since the last event, "
        "shaped as in the result's `tree.nodes` (a view upserts them by `id`)",
    )


class ErrorMessage(BaseModel):
    """The body of every /solve error but a 422: what went wrong and what to do."""

    detail: str


class ErrorEvent(BaseModel):
    """A streamed `error` event (the HTTP status the request would have had)."""

    status: int
    detail: str


class Health(BaseModel):
    status: Literal["ok", "starting", "unavailable"]
    checks: dict[str, str] = {}
