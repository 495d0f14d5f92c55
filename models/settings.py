"""Which models run, on which engine: configuration from the environment (`RSTAR_...`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.default_model import embedded
from models.step_tag_prm import Aggregation
from search.formats import StepFormatName
from search.steps import PromptStyle
from search.text_steps import DELIMITER

PolicyEngine = Literal["vllm", "transformers", "remote"]
RewardEngine = Literal["transformers", "vllm", "remote"]
RewardKind = Literal["ppm", "step_tag_prm"]


class ModelSettings(BaseSettings):
    """Policy and reward model. `default` is the embedded Qwen2.5-Coder-0.5B-Instruct, `tiny`
    the embedded SmolLM2-135M-Instruct (tests, quick demos)."""

    model_config = SettingsConfigDict(env_prefix="RSTAR_", extra="ignore")

    policy_model: str = Field(
        "default", description="local path, hub id, 'default' (Qwen2.5-Coder-0.5B) or 'tiny'"
    )
    policy_engine: PolicyEngine = Field("vllm", description="vllm | transformers | remote")
    policy_url: str | None = Field(
        None, description="OpenAI-compatible server for policy_engine=remote (root or …/v1)"
    )
    prompt_style: PromptStyle | None = Field(
        None,
        description="few_shot | chat | system | bare (default: few_shot for an embedded model, "
        "else bare; the text format reads system or bare only)",
    )
    step_format: StepFormatName = Field(
        "code",
        description="the steps the policy writes: code (rStar-Math's code-augmented steps) or "
        "text (plain steps split at step_delimiter, in the model's chat template)",
    )
    step_delimiter: str = Field(
        DELIMITER,
        min_length=1,
        description="the text format's step end (\\n and \\t escapes are read as newline and tab)",
    )

    ppm_model: str | None = Field(None, description="reward model path/id; unset = no PPM")
    ppm_engine: RewardEngine = Field("transformers", description="transformers | vllm | remote")
    ppm_url: str | None = Field(None, description="vLLM server (root) for ppm_engine=remote")
    ppm_kind: RewardKind = Field(
        "ppm", description="ppm: our one-label head; step_tag_prm: Qwen2.5-Math-PRM style"
    )
    prm_step_tag: str = Field("<extra_0>", description="step separator token of a step-tag PRM")
    prm_aggregation: Aggregation = Field(
        "last",
        description="a step-tag PRM's score of a path from its steps' P(good): last (the last "
        "step's), min (the worst step's) or prod (their product)",
    )

    device: str = Field("auto", description="transformers device: auto | cpu | cuda")
    dtype: str = Field("auto", description="auto | bfloat16 | float16 | float32")
    max_model_len: int = Field(4096, ge=256)
    max_batch: int = Field(64, ge=1, description="largest batch one transformers call runs")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    cpu_kv_cache_gb: float = Field(
        2.0, gt=0, description="vLLM on CPU: host RAM reserved for the KV cache"
    )
    cpu_reserved_cores: int | None = Field(
        None,
        ge=0,
        description="vLLM on CPU: cores its compute threads leave to its scheduler and the search;"
        " unset = 0 on hosts with at most 2 cores, else vLLM's own rule (1)",
    )
    block_size: int | None = Field(
        None,
        ge=16,
        description="vLLM KV-cache block size (tokens); unset = 32 on CPU (vLLM-CPU's 128 "
        "caches only whole blocks, so every child step re-prefilled up to 127 tokens), "
        "vLLM's choice on GPU",
    )
    remote_timeout_s: float = Field(300.0, gt=0)
    remote_api_key: SecretStr | None = Field(None, description="bearer token for remote servers")

    @field_validator("step_delimiter", mode="before")
    @classmethod
    def _escapes(cls, v: object) -> object:
        """A newline is awkward to put in an environment variable: `\\n` stands for one."""
        if isinstance(v, str) and "\\" in v:
            return v.replace("\\n", "\n").replace("\\t", "\t")
        return v

    def resolved_prompt_style(self) -> PromptStyle:
        if self.prompt_style is not None:
            return self.prompt_style
        return "few_shot" if embedded(self.policy_model) else "bare"
