"""The solver service: one policy engine, sandbox pool and reward model shared by every request,
with per-request limits, defaults and admission control."""

from __future__ import annotations

import asyncio
import logging

from models import LoadedModels, ModelSettings, load_models
from sandbox import SandboxSettings, WorkerPool, create_sandbox
from search import Budget, Components, SearchConfig, run_search
from search.grading import default_grader
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
    """Every slot is busy and the queue is full."""


class SolverService:
    def __init__(
        self,
        settings: ServerSettings | None = None,
        model_settings: ModelSettings | None = None,
        sandbox_settings: SandboxSettings | None = None,
    ) -> None:
        self.settings = settings or ServerSettings()
        self.model_settings = model_settings or ModelSettings()
        self.sandbox_settings = sandbox_settings or SandboxSettings()
        self.models: LoadedModels | None = None
        self.sandbox: WorkerPool | None = None
        self._slots = asyncio.Semaphore(self.settings.max_concurrent)
        self._waiting = 0
        self.metrics = Metrics()

    @property
    def ready(self) -> bool:
        return self.models is not None and self.sandbox is not None

    async def start(self) -> None:
        """Start the sandbox, then the engines (fails fast, with the reason, if either can't)."""
        self.sandbox = create_sandbox(self.sandbox_settings).start()
        self.sandbox.observers.append(self.metrics.observe_exec)
        self.models = load_models(self.model_settings)
        log.info("solver ready: policy %s on %s", self.model_settings.policy_model,
                 self.model_settings.policy_engine)  # fmt: skip

    async def close(self) -> None:
        if self.models is not None:
            await self.models.aclose()
            self.models = None
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None

    def budget(self, req: SolveRequest) -> Budget:
        s, b = self.settings, req.budget
        if len(req.problem) > s.max_problem_chars:
            raise LimitExceeded(("body", "problem"),
                                f"the problem has {len(req.problem)} characters; the limit is "
                                f"{s.max_problem_chars} (RSTAR_MAX_PROBLEM_CHARS)")  # fmt: skip
        caps = (
            ("rollouts", b.rollouts, s.max_rollouts, "RSTAR_MAX_ROLLOUTS"),
            ("max_tokens", b.max_tokens, s.max_tokens, "RSTAR_MAX_TOKENS"),
            ("time_limit_s", b.time_limit_s, s.max_time_limit_s, "RSTAR_MAX_TIME_LIMIT_S"),
        )
        for name, value, cap, env in caps:
            if value is not None and value > cap:
                raise LimitExceeded(("body", "budget", name),
                                    f"budget.{name}={value} is above this server's limit {cap} "
                                    f"({env})")  # fmt: skip
        return Budget(
            rollouts=b.rollouts or s.default_rollouts,
            max_tokens=b.max_tokens or s.max_tokens,
            time_limit_s=b.time_limit_s or s.default_time_limit_s,
        )

    async def solve(self, req: SolveRequest) -> SolveResponse:
        budget = self.budget(req)
        if not self.ready:
            raise RuntimeError("the solver is not started")
        if self._slots.locked() and self._waiting >= self.settings.max_queue:
            raise Overloaded()
        self._waiting += 1
        self.metrics.queue_depth.set(self._waiting)
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
            self.metrics.queue_depth.set(self._waiting)
        self.metrics.running.inc()
        try:
            return await self._run(req, budget)
        finally:
            self.metrics.running.dec()
            self._slots.release()

    async def _run(self, req: SolveRequest, budget: Budget) -> SolveResponse:
        assert self.models is not None and self.sandbox is not None
        ms = self.model_settings
        components = Components(self.models.policy, self.sandbox, self.models.reward_model)
        config = SearchConfig(prompt_style=ms.resolved_prompt_style())
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
            steps=result.steps,
            alternatives=result.alternatives,
            usage=result.usage,
            stopped_by=result.stopped_by,
            models=ModelInfo(
                policy=ms.policy_model,
                policy_engine=ms.policy_engine,
                reward_model=ms.ppm_model,
            ),
            tree=result.tree.to_dict() if req.return_tree else None,
        )
