"""The models, sandbox and search settings a phase runs on: one engine and one sandbox pool per
phase, shared by every problem searched in it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from models.settings import ModelSettings, PolicyEngine, RewardEngine
from search import Components, SearchConfig
from training.config import RoundConfig


@dataclass(frozen=True)
class ModelChoice:
    """Which policy and PPM, on which engines (the previous round's or this round's)."""

    policy: str
    ppm: str | None
    engine: PolicyEngine
    ppm_engine: RewardEngine
    policy_url: str | None = None
    ppm_url: str | None = None
    prompt_style: Any = None  # None: few_shot for an embedded model, else bare


def model_settings(cfg: RoundConfig, choice: ModelChoice) -> ModelSettings:
    extra = {
        k: getattr(cfg, k)
        for k in ("max_model_len", "cpu_kv_cache_gb", "gpu_memory_utilization")
        if getattr(cfg, k) is not None
    }
    return ModelSettings(
        policy_model=choice.policy,
        policy_engine=choice.engine,
        policy_url=choice.policy_url,
        prompt_style=choice.prompt_style,
        ppm_model=choice.ppm,
        ppm_engine=choice.ppm_engine,
        ppm_url=choice.ppm_url,
        **extra,
    )


def input_models(cfg: RoundConfig) -> ModelChoice:
    """The round's inputs, as generation runs them."""
    return ModelChoice(
        policy=cfg.policy,
        ppm=cfg.ppm,
        engine=cfg.engine,
        ppm_engine=cfg.ppm_engine,
        policy_url=cfg.policy_url,
        ppm_url=cfg.ppm_url,
        prompt_style=cfg.prompt_style,
    )


def search_config(
    cfg: RoundConfig, settings: ModelSettings, *, for_eval: bool = False
) -> SearchConfig:
    """The round's search settings in the policy's prompt style; the eval may search shallower
    or narrower, and never goes on past its budget."""
    if not for_eval:
        return cfg.search.config(settings.resolved_prompt_style())
    return cfg.search.config(
        settings.resolved_prompt_style(),
        candidates=cfg.eval.candidates or cfg.search.candidates,
        max_depth=cfg.eval.max_depth or cfg.search.max_depth,
        unsolved_rollouts=None,
    )


@contextlib.asynccontextmanager
async def open_sandbox() -> AsyncIterator[Any]:
    """The configured sandbox pool (RSTAR_SANDBOX_* settings), started and closed."""
    from sandbox import create_sandbox

    pool = create_sandbox()
    try:
        pool.start()
        yield pool
    finally:
        pool.close()


@contextlib.asynccontextmanager
async def open_components(settings: ModelSettings, sandbox: Any) -> AsyncIterator[Components]:
    """Load the policy and reward model once; every search of the phase shares them."""
    from models import load_models

    models = load_models(settings)
    try:
        yield Components(policy=models.policy, sandbox=sandbox, reward_model=models.reward_model)
    finally:
        await models.aclose()
