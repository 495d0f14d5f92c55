"""Search settings shared by MCTS and the baselines, and the components a search uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from pydantic import BaseModel, Field

from search.formats import StepFormatName, format_prompt_style
from search.grading import Grader, default_grader
from search.judge import ChoiceMethod
from search.protocols import ExpansionCache, Policy, RewardModel, Sandbox
from search.steps import PromptStyle
from search.text_steps import DELIMITER


class SearchSettings(BaseModel):
    """How a search is shaped. Declared once: the server reads it from `RSTAR_SEARCH_<FIELD>`
    (server.settings), `rstar solve|eval` takes its flags over those, and a round nests it in
    its config (training.config), so the three start from the same defaults."""

    # the command lines' flag where it is not the field's name
    FLAGS: ClassVar[dict[str, str]] = {"parallel_rollouts": "parallel"}

    candidates: int = Field(4, ge=1, le=64, description="children per expansion")
    c_uct: float = Field(2.0, ge=0, description="exploration constant c of UCT")
    max_expansions: int = Field(
        1,
        ge=1,
        le=16,
        description="MCTS: times a node may be sampled for children. A node whose children "
        "are all terminal, invalid or explored out gets `candidates` new ones (progressive "
        "widening) instead of closing, until it has been sampled this many times",
    )
    max_depth: int = Field(12, ge=1, le=64, description="most steps in a trajectory")
    parallel_rollouts: int = Field(
        2,
        ge=1,
        le=256,
        description="MCTS rollouts in flight at once: few, so that each learns from the "
        "outcomes of those before it",
    )
    virtual_loss: float = Field(1.0, ge=0, description="value an in-flight visit counts as losing")
    temperature: float = Field(0.7, ge=0, description="sampling temperature")
    # 1.0: on vLLM-CPU (no Triton) any top_p < 1 sorts the whole vocabulary of every row at
    # every step; with the 0.5B default, MCTS ran 70 tokens/s at 0.95 against 113 at 1.0
    # (benchmarks.engine_throughput). The temperature already trims the tail.
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling")
    step_max_tokens: int = Field(256, ge=8, description="tokens one step may take")
    answer_max_tokens: int = Field(64, ge=8, description="tokens the final answer may take")
    exec_timeout_s: float = Field(10.0, gt=0, description="seconds one step's code may run")
    output_clip_chars: int = Field(1024, ge=64, description="code output kept in the prompt")
    final_choice: ChoiceMethod = Field(
        "weighted_vote",
        description="MCTS's answer: a vote weighted by the terminals' scores, a plain vote, "
        "or the best-scored terminal",
    )
    vote_top_k: int | None = Field(
        None, ge=1, description="MCTS's vote counts only the top-k terminals by score; unset: all"
    )
    seed: int | None = Field(None, description="sampling seed (not honoured by vLLM on CPU)")
    unsolved_rollouts: int | None = Field(
        None,
        ge=1,
        description="MCTS with a gold answer (training data): while no terminal is "
        "correct, rollouts go on up to this many (rStar-Math's extra rollouts on hard problems)",
    )
    particle_temperature: float = Field(
        1.0, gt=0, description="particle filtering: softmax temperature over the PPM scores"
    )

    def config(
        self,
        prompt_style: PromptStyle,
        step_format: StepFormatName = "code",
        step_delimiter: str = DELIMITER,
        **update: object,
    ) -> SearchConfig:
        """What a search runs with: these settings (`update` over them) and what belongs to the
        policy (models.ModelSettings): the step format it writes, the text format's delimiter,
        and the prompt style, as that format reads it (search.formats.format_prompt_style)."""
        values = {name: getattr(self, name) for name in SearchSettings.model_fields}
        return SearchConfig.model_validate(
            {
                **values,
                **update,
                "prompt_style": format_prompt_style(step_format, prompt_style),
                "step_format": step_format,
                "step_delimiter": step_delimiter,
            }
        )


class SearchConfig(SearchSettings):
    """The settings a search runs with: `SearchSettings`, and the step format, delimiter and
    prompt style of the policy."""

    prompt_style: PromptStyle = "few_shot"
    step_format: StepFormatName = Field(
        "code",
        description="code: rStar-Math's code-augmented steps; text: plain steps split at "
        "step_delimiter, in the model's chat template",
    )
    step_delimiter: str = Field(
        DELIMITER, min_length=1, description="the text format: where one step ends"
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
