"""Server configuration from the environment (`RSTAR_...`): listening address, per-request
limits and defaults, admission control, the search's settings. Models and sandbox have their
own settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from search.config import SearchSettings
from search.settle import StopWhen


class SearchEnv(BaseSettings):
    """The search settings from `RSTAR_SEARCH_<FIELD>` (`RSTAR_SEARCH_CANDIDATES`,
    `RSTAR_SEARCH_MAX_DEPTH`, …): the server's for every request, and what `rstar solve|eval`
    use where no flag is given."""

    # RSTAR_SEARCH_MAX_DEPTH → search.max_depth: split once, after the section's name
    model_config = SettingsConfigDict(
        env_prefix="RSTAR_", extra="ignore", env_nested_delimiter="_", env_nested_max_split=1
    )

    search: SearchSettings = Field(default_factory=SearchSettings)


class ServerSettings(SearchEnv):
    """Everything `python -m server` reads from `RSTAR_*` but the models and the sandbox."""

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
    default_stop_when: StopWhen = Field(
        "budget", description="stop early once the answer is settled: unbeatable, confident"
    )
    default_settle_confidence: float = Field(0.95, gt=0.5, lt=1)

    # OpenAI `reasoning_effort` → MCTS rollouts (minimal counts as low).
    effort_low_rollouts: int = Field(4, ge=1)
    effort_medium_rollouts: int = Field(8, ge=1)
    effort_high_rollouts: int = Field(32, ge=1)

    # Admission control: searches running at once, and how many may wait for a slot.
    # API keys (off when neither is set): `name:key` entries, comma-separated or one per line.
    api_keys: SecretStr | None = Field(None, description="name:key,name:key (or bare keys)")
    api_keys_file: str | None = Field(None, description="one name:key per line (a Secret)")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="request bodies above: 413")
    metrics_require_key: bool = Field(False, description="GET /metrics needs a key too")
    key_max_in_flight: int | None = Field(
        None, ge=1, description="searches one key may have queued or running (unset = no limit)"
    )
    key_requests_per_minute: int | None = Field(
        None, ge=1, description="requests one key may send per minute (unset = no limit)"
    )
    max_concurrent: int = Field(8, ge=1)
    max_queue: int = Field(32, ge=0)
    retry_after_s: int = Field(5, ge=1)
    # A request's deadline is its time limit from arrival (queueing included); a search still
    # running this long after it is abandoned with a 504.
    deadline_grace_s: float = Field(30.0, ge=0)

    # The expansion cache: Redis when a URL is given (shared by replicas), else in-process LRU.
    redis_url: str | None = Field(None, description="redis://host:6379/0; unset = in-process")
    cache_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="lifetime of a cached expansion")
    cache_max_entries: int = Field(100_000, ge=0, description="in-process LRU size (0 = off)")
    cache_max_entry_bytes: int = Field(1 << 20, ge=1024)
    cache_timeout_s: float = Field(0.25, gt=0, description="per Redis call; slower = a miss")
    cache_retry_s: float = Field(5.0, gt=0, description="after a Redis failure, skip it this long")

    # Logging: JSON lines for collectors, text for a terminal; auto = text on a TTY.
    log_format: Literal["auto", "json", "text"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.strip().upper() if isinstance(v, str) else v
