"""The solver service: one policy engine, sandbox pool and reward model shared by every request,
with per-request limits, defaults and admission control."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from models import LoadedModels, ModelSettings, load_models, model_versions
from sandbox import SandboxSettings, create_sandbox
from search import Budget, Components, SearchConfig, SearchProgress, run_search
from search.grading import default_grader
from search.protocols import ExpansionCache, Sandbox
from server.admission import FairSlots, KeyLimits
from server.auth import ANONYMOUS
from server.cache import create_cache
from server.metrics import Metrics
from server.protocol import ModelInfo, SolveRequest, SolveResponse
from server.settings import ServerSettings

log = logging.getLogger(__name__)


class LimitExceeded(Exception):
    """A request asks for more than the server allows; `loc` names the field."""

    def __init__(self, loc: tuple[str, ...], msg: str) -> None:
        super().__init__(msg)
        self.loc = loc
        self.msg = msg


class Overloaded(Exception):
    """No search slot: the queue is full (429), or the deadline passed while queued (503)."""

    def __init__(self, msg: str, status: int = 429, retry_after_s: float | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.status = status
        self.retry_after_s = retry_after_s


class DeadlineExceeded(Exception):
    """The search outlived its deadline (time limit + RSTAR_DEADLINE_GRACE_S)."""


class SearchFailed(Exception):
    """The search raised an error of its own (an engine, a bug): a 500 that says what it was;
    the traceback goes to the log."""


class SolverService:
    """Owns what it starts; `models`, `sandbox` or `cache` passed in are shared, not closed."""

    def __init__(
        self,
        settings: ServerSettings | None = None,
        model_settings: ModelSettings | None = None,
        sandbox_settings: SandboxSettings | None = None,
        *,
        models: LoadedModels | None = None,
        sandbox: Sandbox | None = None,
        cache: ExpansionCache | None = None,
    ) -> None:
        self.settings = settings or ServerSettings()
        self.model_settings = model_settings or ModelSettings()
        self.sandbox_settings = sandbox_settings or SandboxSettings()
        self.models: LoadedModels | None = models
        self.sandbox: Sandbox | None = sandbox
        self.cache: ExpansionCache | None = cache
        self._owned: set[str] = set()
        self._slots = FairSlots(self.settings.max_concurrent)
        self._waiting = 0
        self.key_limits = KeyLimits(
            self.settings.key_max_in_flight, self.settings.key_requests_per_minute
        )
        self.metrics = Metrics()
        self.versions: dict[str, str | None] = {}

    @property
    def ready(self) -> bool:
        return self.models is not None and self.sandbox is not None

    async def start(self) -> None:
        """Start the sandbox, then the engines (fails fast, with the reason, if either can't),
        then the cache (which may be down: requests then run without it)."""
        if self.sandbox is None:
            pool = create_sandbox(self.sandbox_settings).start()
            pool.observers.append(self.metrics.observe_exec)
            self.sandbox, self._owned = pool, self._owned | {"sandbox"}
        if self.models is None:
            self.models, self._owned = load_models(self.model_settings), self._owned | {"models"}
        self.versions = model_versions(self.model_settings)
        if self.cache is None and (self.settings.redis_url or self.settings.cache_max_entries):
            self.cache = create_cache(self.settings, self.metrics)
            self._owned |= {"cache"}
            up = await self.cache.ping()
            log.info("expansion cache: %s%s", self.cache.backend, "" if up else " (unreachable)")
        log.info(
            "solver ready: policy %s on %s",
            self.versions["policy"],
            self.model_settings.policy_engine,
        )

    async def close(self) -> None:
        if self.models is not None and "models" in self._owned:
            await self.models.aclose()
        if self.sandbox is not None and "sandbox" in self._owned:
            self.sandbox.close()  # type: ignore[attr-defined]
        if self.cache is not None and "cache" in self._owned:
            await self.cache.aclose()  # type: ignore[attr-defined]
        self.models = self.sandbox = self.cache = None
        self._owned = set()

    @property
    def cache_namespace(self) -> str:
        ms = self.model_settings
        names: list[object] = [self.versions, ms.ppm_kind, ms.resolved_prompt_style()]
        if ms.ppm_kind == "step_tag_prm" and ms.prm_aggregation != "last":
            names.append(ms.prm_aggregation)  # the steps' cached scores depend on it
        return json.dumps(names)

    def search_config(self, req: SolveRequest) -> SearchConfig:
        """The server's search settings in the request's step format (else the model's)."""
        ms = self.model_settings
        return self.settings.search.config(
            ms.resolved_prompt_style(),
            step_format=req.step_format or ms.step_format,
            step_delimiter=ms.step_delimiter,
        )

    def budget(self, req: SolveRequest) -> Budget:
        s, b = self.settings, req.budget
        if len(req.problem) > s.max_problem_chars:
            raise LimitExceeded(
                ("body", "problem"),
                f"the problem has {len(req.problem)} characters; the limit is "
                f"{s.max_problem_chars} (RSTAR_MAX_PROBLEM_CHARS)",
            )
        caps = (
            ("rollouts", b.rollouts, s.max_rollouts, "RSTAR_MAX_ROLLOUTS"),
            ("max_tokens", b.max_tokens, s.max_tokens, "RSTAR_MAX_TOKENS"),
            ("time_limit_s", b.time_limit_s, s.max_time_limit_s, "RSTAR_MAX_TIME_LIMIT_S"),
        )
        for name, value, cap, env in caps:
            if value is not None and value > cap:
                raise LimitExceeded(
                    ("body", "budget", name),
                    f"budget.{name}={value} is above this server's limit {cap} ({env})",
                )
        return Budget(
            rollouts=b.rollouts or s.default_rollouts,
            max_tokens=b.max_tokens or s.max_tokens,
            time_limit_s=b.time_limit_s or s.default_time_limit_s,
            stop_when=b.stop_when or s.default_stop_when,
            settle_confidence=b.settle_confidence or s.default_settle_confidence,
        )

    def check_admission(self, key: str = ANONYMOUS) -> None:
        """Raise Overloaded when every slot is busy and the queue is full, or when `key` is
        over its own limits."""
        if self._slots.locked() and self._waiting >= self.settings.max_queue:
            raise Overloaded(
                f"the server is busy ({self.settings.max_concurrent} searches "
                f"running, {self._waiting} waiting); retry later"
            )
        refused = self.key_limits.refusal(key)
        if refused is not None:
            self.metrics.key_rejections.labels(key).inc()
            raise Overloaded(refused[0], retry_after_s=refused[1])

    async def solve(
        self,
        req: SolveRequest,
        progress: Callable[[SearchProgress], None] | None = None,
        key: str = ANONYMOUS,
    ) -> SolveResponse:
        """Admit, queue, search within the request's deadline. Cancelling the calling task
        (a client that went away) cancels the search and frees its slot."""
        budget = self.budget(req)
        if not self.ready:
            raise RuntimeError("the solver is not started")
        assert budget.time_limit_s is not None
        arrived = time.monotonic()
        self.check_admission(key)
        self.key_limits.enter(key)
        outcome = "error"
        try:
            res = await self._admitted(req, budget, progress, key, arrived)
            outcome = "ok"
            return res
        except Overloaded:
            outcome = "overloaded"
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            self.key_limits.leave(key)
            self.metrics.key_searches.labels(key, outcome).inc()

    async def _admitted(
        self,
        req: SolveRequest,
        budget: Budget,
        progress: Callable[[SearchProgress], None] | None,
        key: str,
        arrived: float,
    ) -> SolveResponse:
        assert budget.time_limit_s is not None
        self._waiting += 1
        self.metrics.queue_depth.set(self._waiting)
        try:
            async with asyncio.timeout(budget.time_limit_s):
                await self._slots.acquire(key)
        except TimeoutError:
            msg = f"no search slot within the request's time limit ({budget.time_limit_s:g}s)"
            raise Overloaded(msg + "; retry later", status=503) from None
        finally:
            self._waiting -= 1
            self.metrics.queue_depth.set(self._waiting)
        self.metrics.running.inc()
        try:
            limit = budget.time_limit_s  # the request's, from its arrival
            remaining = max(0.01, limit - (time.monotonic() - arrived))
            budget = budget.model_copy(update={"time_limit_s": remaining})
            try:
                async with asyncio.timeout(remaining + self.settings.deadline_grace_s):
                    return await self._run(req, budget, progress)
            except TimeoutError:
                self.metrics.cancelled.labels("deadline").inc()
                raise DeadlineExceeded(
                    f"the search overran its deadline ({limit:g}s "
                    f"+ {self.settings.deadline_grace_s:g}s grace)"
                ) from None
            except asyncio.CancelledError:
                self.metrics.cancelled.labels("client_disconnect").inc()
                raise
        finally:
            self.metrics.running.dec()
            self._slots.release()

    async def _run(
        self,
        req: SolveRequest,
        budget: Budget,
        progress: Callable[[SearchProgress], None] | None,
    ) -> SolveResponse:
        assert self.models is not None and self.sandbox is not None
        ms = self.model_settings
        components = Components(
            self.models.policy,
            self.sandbox,
            self.models.reward_model,
            progress=progress,
            progress_tree=req.stream_tree,
            cache=self.cache if req.cache else None,
            cache_namespace=self.cache_namespace,
        )
        config = self.search_config(req)
        result = await run_search(req.algorithm, req.problem, components, budget, config)
        self.metrics.observe_search(result)
        correct = None
        if req.answer is not None and result.answer is not None:
            correct = await default_grader().aequal(req.answer, result.answer)
        return SolveResponse(
            answer=result.answer,
            answer_text=result.answer_text,
            score=result.score,
            correct=correct,
            reward_source=result.reward_source,
            algorithm=req.algorithm,
            step_format=config.step_format,
            steps=result.steps,
            alternatives=result.alternatives,
            usage=result.usage,
            stopped_by=result.stopped_by,
            models=ModelInfo(
                policy=ms.policy_model,
                policy_engine=ms.policy_engine,
                reward_model=ms.ppm_model,
                versions=self.versions,
            ),
            tree=result.tree.to_dict() if req.return_tree else None,
        )
