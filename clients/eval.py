"""`rstar eval` against a running server: `RemoteSolver`, the one piece of evaluation that needs
the HTTP client. The core (problem files, the graded run, the report, the plot) lives in
`evaluation/`, below both this command line and the round trainer, which share it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from evaluation.run import EvalError, Outcome


class RemoteSolver:
    """Searches on a running server (its search settings and caps apply), with its expansion
    cache off so every problem is sampled afresh. A full queue (429, or 503 after waiting) is
    retried after `Retry-After`, up to `max_wait_s`; any other refusal (a budget above the
    server's caps, say) stops the run."""

    def __init__(
        self,
        client: Any,
        *,
        max_tokens: int | None = None,
        time_limit_s: float | None = None,
        settle_confidence: float | None = None,
        max_wait_s: float = 600.0,
    ) -> None:
        self.client = client
        self.max_tokens = max_tokens
        self.time_limit_s = time_limit_s
        self.settle_confidence = settle_confidence
        self.max_wait_s = max_wait_s
        self.models: dict[str, Any] = {}

    async def solve(
        self,
        problem: str,
        algorithm: str,
        rollouts: int,
        max_tokens: int | None = None,
        stop_when: str = "budget",
        step_format: str = "code",
    ) -> Outcome:
        from clients.client import RstarError

        budget = {
            "rollouts": rollouts,
            "max_tokens": max_tokens or self.max_tokens,
            "time_limit_s": self.time_limit_s,
            # stated, not left to the server's default: the run's key says which it was
            "stop_when": stop_when,
            "settle_confidence": self.settle_confidence,
        }
        t0 = time.monotonic()
        while True:
            try:
                r = await self.client.solve(
                    problem,
                    algorithm=algorithm,
                    budget=budget,
                    cache=False,
                    step_format=step_format,  # type: ignore[arg-type]
                )
                break
            except RstarError as e:
                if e.status in (429, 503) and time.monotonic() - t0 < self.max_wait_s:
                    await asyncio.sleep(e.retry_after or 1.0)
                    continue
                if e.status >= 500:
                    raise  # this problem failed (a deadline overrun, say); the run goes on
                raise EvalError(f"the server refused the request: {e}") from e
            except (httpx.ConnectError, httpx.RemoteProtocolError) as e:
                raise EvalError(f"cannot reach the server: {e}") from e
        if not self.models:
            self.models = r.models.model_dump()
        u = r.usage
        return Outcome(
            r.answer, u.tokens, u.elapsed_s, r.stopped_by, u.rollouts, tokens_saved=u.tokens_saved
        )
