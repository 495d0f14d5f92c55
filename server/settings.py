"""Server configuration from the environment (`RSTAR_...`): listening address, per-request
limits and defaults, admission control. Models and sandbox have their own settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RSTAR_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    # Caps on what one request may ask for (a request above them gets a 422 naming the cap).
    max_problem_chars: int = Field(8000, ge=1)
    max_rollouts: int = Field(64, ge=1)
    max_tokens: int = Field(200_000, ge=1)
    max_time_limit_s: float = Field(600.0, gt=0)

    # Defaults for what a request leaves out.
    default_rollouts: int = Field(8, ge=1)
    default_time_limit_s: float = Field(120.0, gt=0)

    # Admission control: searches running at once, and how many may wait for a slot.
    max_concurrent: int = Field(8, ge=1)
    max_queue: int = Field(32, ge=0)
    retry_after_s: int = Field(5, ge=1)
