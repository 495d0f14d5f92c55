"""Search hyper-parameters shared by MCTS and the baselines, and the components a search uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from search.grading import Grader, default_grader
from search.judge import ChoiceMethod
from search.protocols import ExpansionCache, Policy, RewardModel, Sandbox
from search.steps import PromptStyle


class SearchConfig(BaseModel):
    candidates: int = Field(4, ge=1, le=64, description="children generated per MCTS expansion")
    c_uct: float = Field(2.0, ge=0, description="exploration constant c of UCT")
    max_depth: int = Field(12, ge=1, le=64, description="most steps in one trajectory")
    parallel_rollouts: int = Field(
        2,
        ge=1,
        le=256,
        description="MCTS rollouts in flight at once: few, so that each learns from the "
        "outcomes of those before it",
    )
    virtual_loss: float = Field(1.0, ge=0, description="value an in-flight visit counts as losing")
    temperature: float = Field(0.7, ge=0)
    # 1.0: on vLLM-CPU (no Triton) any top_p < 1 sorts the whole vocabulary of every row at
    # every step; with the 0.5B default, MCTS ran 70 tokens/s at 0.95 against 113 at 1.0
    # (benchmarks.engine_throughput). The temperature already trims the tail.
    top_p: float = Field(1.0, gt=0, le=1)
    step_max_tokens: int = Field(256, ge=8)
    answer_max_tokens: int = Field(64, ge=8)
    prompt_style: PromptStyle = "few_shot"
    exec_timeout_s: float = Field(10.0, gt=0)
    output_clip_chars: int = Field(1024, ge=64)
    final_choice: ChoiceMethod = Field(
        "weighted_vote",
        description="MCTS's answer: a vote weighted by the terminals' scores, a plain vote, "
        "or the best-scored terminal",
    )
    vote_top_k: int | None = Field(
        None, ge=1, description="MCTS's vote counts only the top-k terminals by score (all: unset)"
    )
    seed: int | None = None
    unsolved_rollouts: int | None = Field(
        None,
        ge=1,
        description="MCTS with a gold answer (training data): while no terminal is "
        "correct, rollouts go on up to this many (rStar-Math's extra rollouts on hard problems)",
    )
    particle_temperature: float = Field(
        1.0, gt=0, description="particle filtering: softmax temperature over the PPM scores"
    )


@dataclass(frozen=True, slots=True)
class SearchProgress:
    """A snapshot after each wave, for progress bars and streamed events."""

    rollouts: int
    rollouts_budget: int
    tokens: int
    nodes: int
    elapsed_s: float
    best_answer: str | None
    best_score: float | None
    tree_nodes: list[dict] | None = None  # with Components.progress_tree: nodes new or changed


@dataclass
class Components:
    """What a search runs on. Only `policy` and `sandbox` are required; `progress`, if set,
    is called after every wave. With a `cache`, expansions are looked up and stored under
    `cache_namespace`, which must name the model versions (policy and reward model)."""

    policy: Policy
    sandbox: Sandbox
    reward_model: RewardModel | None = None
    grader: Grader = field(default_factory=default_grader)
    progress: Callable[[SearchProgress], None] | None = None
    progress_tree: bool = False  # progress also carries the nodes each wave added or changed
    cache: ExpansionCache | None = None
    cache_namespace: str = ""
