"""One compute budget every algorithm obeys, and the account of what a search spent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from pydantic import BaseModel, Field

from search.settle import StopWhen, tokens_saved

StopReason = Literal["rollouts", "max_tokens", "time_limit_s", "exhausted", "finished", "settled"]


class Budget(BaseModel):
    """Limits of one search. Whichever is reached first stops it.

    The token and time limits are checked before each batched model call, so a search may
    overshoot the token limit by at most one batch; the time limit also cancels calls in flight.
    `stop_when` may also stop it once the answer is settled (search.settle), after any wave.
    """

    rollouts: int = Field(
        16, ge=1, description="MCTS rollouts, or samples for best-of-N / self-consistency"
    )
    max_tokens: int | None = Field(None, ge=1, description="generated tokens, all calls together")
    time_limit_s: float | None = Field(None, gt=0, description="wall-clock seconds")
    stop_when: StopWhen = Field(
        "budget",
        description="budget: spend it all; unbeatable: also stop once the leading answer can no "
        "longer be overtaken by the rollouts left; confident: also stop once a Beta posterior "
        "puts the leader ahead of the runner-up with probability settle_confidence",
    )
    settle_confidence: float = Field(
        0.95, gt=0.5, lt=1, description="the probability stop_when=confident stops at"
    )


class Usage(BaseModel):
    """What a search spent."""

    rollouts: int = 0
    tokens: int = Field(0, description="generated tokens")
    prompt_tokens: int = Field(0, description="prompt tokens the policy processed")
    policy_calls: int = 0
    sandbox_runs: int = 0
    reward_calls: int = 0
    nodes: int = 0
    duplicates: int = 0
    cache_hits: int = Field(0, description="expansions served from the cache")
    cache_misses: int = Field(0, description="expansions computed (and stored) with a cache on")
    tokens_saved: int | None = Field(
        None,
        description="with a stop_when rule: an estimate of the generated tokens the rest of the "
        "budget would have cost, at the mean cost of a finished rollout (0 when it ran to the "
        "end; null with stop_when=budget)",
    )
    elapsed_s: float = 0.0


class Tracker:
    """Counts spending against a budget; the single place a search asks whether it may go on."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.usage = Usage(tokens_saved=None if budget.stop_when == "budget" else 0)
        self.started_rollouts = 0
        self.rollout_limit = budget.rollouts  # MCTS may raise it once (extend_unsolved)
        self._t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def remaining_time(self) -> float | None:
        if self.budget.time_limit_s is None:
            return None
        return max(0.0, self.budget.time_limit_s - self.elapsed())

    def stop_reason(self) -> StopReason | None:
        """A hard limit that forbids any further model call."""
        b = self.budget
        if b.max_tokens is not None and self.usage.tokens >= b.max_tokens:
            return "max_tokens"
        if b.time_limit_s is not None and self.elapsed() >= b.time_limit_s:
            return "time_limit_s"
        return None

    def affordable(self, calls: int, tokens_each: float | None) -> int:
        """How many of `calls` more calls of about `tokens_each` generated tokens the token
        budget still covers: all of them without a token budget or an estimate."""
        cap = self.budget.max_tokens
        if cap is None or not tokens_each:
            return calls
        return max(0, min(calls, int((cap - self.usage.tokens) // tokens_each)))

    def can_start_rollout(self) -> bool:
        return self.started_rollouts < self.rollout_limit and self.stop_reason() is None

    def start_rollout(self) -> None:
        self.started_rollouts += 1

    def settled(self, per_rollout: float, rollouts: int) -> StopReason:
        """Stop because the answer is settled, with the estimate of what that saved against a
        budget of `rollouts` at `per_rollout` tokens each."""
        self.usage.tokens_saved = tokens_saved(
            per_rollout, rollouts, self.usage.tokens, self.budget.max_tokens
        )
        return "settled"

    def finish(self) -> Usage:
        self.usage.elapsed_s = round(self.elapsed(), 4)
        return self.usage


class BudgetTimeout(Exception):
    """The wall-clock budget ran out while a model or sandbox call was in flight."""


@asynccontextmanager
async def deadline(tracker: Tracker) -> AsyncIterator[None]:
    """Cancel the calls inside when the search's time budget runs out."""
    cm = asyncio.timeout(tracker.remaining_time())
    try:
        async with cm:
            yield
    except TimeoutError:
        if cm.expired():
            raise BudgetTimeout from None
        raise
