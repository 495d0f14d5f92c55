"""OpenAI-compatible routes: `/v1/models` lists one model per search algorithm
(`rstar-mcts`, `rstar-best_of_n`, …); `/v1/chat/completions` solves the last user message.

The budget comes from `reasoning_effort` (low/medium/high → RSTAR_EFFORT_*_ROLLOUTS rollouts)
or an explicit `budget` body field; `max_completion_tokens` caps generated tokens. The reply
is the winning trajectory (reasoning, code, output per step) and the boxed answer; `usage`
counts the tokens the search really processed. With `stream: true`, progress arrives as
`reasoning_content` deltas while the search runs, a last one says why it stopped, then the
answer arrives as `content` deltas.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from search import ALGORITHMS, SearchProgress
from server.auth import key_name
from server.contract import CHAT_RESPONSES, MODELS_RESPONSES, OPTIONAL_AUTH, bearer
from server.lifecycle import ClientDisconnected, Event, solve_events, until_disconnect
from server.openai_protocol import (
    MODEL_PREFIX,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    CompletionUsage,
    DeltaMessage,
    ModelCard,
    ModelList,
    completion_id,
)
from server.protocol import BudgetRequest, SolveRequest, SolveResponse
from server.service import SearchFailed, SolverService

STARTED = int(time.time())


class OpenAIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status,
            message,
            type_,
            param,
            code,
        )


def model_ids() -> list[str]:
    return [MODEL_PREFIX + a for a in ALGORITHMS]


def to_solve_request(body: ChatCompletionRequest, svc: SolverService) -> SolveRequest:
    if body.model not in model_ids():
        raise OpenAIError(
            404,
            f"The model `{body.model}` does not exist; use one of "
            f"{', '.join(model_ids())} (GET /v1/models)",
            "invalid_request_error",
            "model",
            "model_not_found",
        )
    users = [m for m in body.messages if m.role == "user"]
    problem = users[-1].text().strip() if users else ""
    if not problem:
        raise OpenAIError(
            400,
            "no user message with text: the last user message is the problem",
            "invalid_request_error",
            "messages",
        )
    budget = body.budget or BudgetRequest()
    if body.budget is None and body.reasoning_effort is not None:
        s = svc.settings
        rollouts = {
            "minimal": s.effort_low_rollouts,
            "low": s.effort_low_rollouts,
            "medium": s.effort_medium_rollouts,
            "high": s.effort_high_rollouts,
        }
        budget = BudgetRequest(rollouts=min(rollouts[body.reasoning_effort], s.max_rollouts))
    cap = body.max_completion_tokens or body.max_tokens
    if cap is not None:
        budget = budget.model_copy(update={"max_tokens": cap})
    algorithm = body.algorithm or body.model.removeprefix(MODEL_PREFIX)
    return SolveRequest(
        problem=problem,
        algorithm=algorithm,
        budget=budget,  # type: ignore[arg-type]
        cache=body.cache,
        step_format=body.step_format,
    )


# The policy writes each step as `# Step k: …`; the rendering numbers steps itself.
_STEP_LABEL = re.compile(r"^\s*step\s*\d+\s*[:.)\-–]\s*", re.IGNORECASE)


def without_step_label(reasoning: str) -> str:
    """A step's reasoning without the `Step k:` it starts with (renderings number steps)."""
    return _STEP_LABEL.sub("", reasoning.strip(), count=1)


def render_steps(res: SolveResponse) -> list[str]:
    """Markdown pieces, one per step, then the answer: the assistant's message. A text step
    shows a code block only when it has one."""
    parts = []
    for i, step in enumerate(res.steps, 1):
        reasoning = without_step_label(step.reasoning)
        text = f"**Step {i}.** {reasoning}\n"
        if res.step_format == "code" or step.code.strip():
            text += f"\n```python\n{step.code.rstrip()}\n```\n"
        if step.output and step.output.strip():
            text += f"Output: `{step.output.strip()}`\n"
        parts.append(text + "\n")
    if res.answer is not None:
        parts.append(f"The answer is $\\boxed{{{res.answer}}}$.")
    else:
        parts.append("No answer was found within the budget.")
    return parts


def finish_reason(res: SolveResponse) -> str:
    return "stop" if res.answer is not None else "length"


def usage_of(res: SolveResponse) -> CompletionUsage:
    u = res.usage
    return CompletionUsage(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.tokens,
        total_tokens=u.prompt_tokens + u.tokens,
    )


def extras(res: SolveResponse) -> dict:
    return {
        "answer": res.answer,
        "score": res.score,
        "algorithm": res.algorithm,
        "step_format": res.step_format,
        "stopped_by": res.stopped_by,
        "usage": res.usage.model_dump(),
        "alternatives": [a.model_dump() for a in res.alternatives],
    }


def stop_line(res: SolveResponse) -> str:
    """The stream's last reasoning line: why the search stopped, and what a settled answer
    saved."""
    line = f"stopped by {res.stopped_by} after {res.usage.rollouts} rollouts"
    if res.usage.tokens_saved:
        line += f", about {res.usage.tokens_saved} tokens saved"
    return line + "\n"


def progress_line(p: SearchProgress) -> str:
    best = f"best answer {p.best_answer}" if p.best_answer is not None else "no answer yet"
    if p.best_answer is not None and p.best_score is not None:
        best += f" (score {p.best_score:.2f})"
    return f"rollout {p.rollouts}/{p.rollouts_budget}, {p.tokens} tokens, {best}\n"


def openai_router(svc: SolverService, on_error) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(bearer)])

    @router.get(
        "/models", response_model=ModelList, responses=MODELS_RESPONSES, openapi_extra=OPTIONAL_AUTH
    )
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=m, created=STARTED) for m in model_ids()])

    @router.post(
        "/chat/completions",
        response_model=ChatCompletion,
        responses=CHAT_RESPONSES,
        openapi_extra=OPTIONAL_AUTH,
    )
    async def chat(body: ChatCompletionRequest, request: Request):
        req = to_solve_request(body, svc)
        svc.budget(req)  # limits → 400 before anything starts
        fingerprint = (svc.versions or {}).get("policy")
        if body.stream:
            svc.check_admission(key_name(request))
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                _stream(
                    svc, req, body.model, fingerprint, include_usage, on_error, key_name(request)
                ),
                media_type="text/event-stream",
            )
        try:
            res = await until_disconnect(request, svc.solve(req, key=key_name(request)))
        except ClientDisconnected:
            raise
        except Exception as e:
            status, msg = on_error(e)
            if status == 500:  # answered in OpenAI's error shape, not as a bare 500
                raise SearchFailed(msg) from e
            raise
        return ChatCompletion(
            model=body.model,
            system_fingerprint=fingerprint,
            choices=[
                Choice(
                    message=ChatCompletionMessage(content="".join(render_steps(res))),
                    finish_reason=finish_reason(res),
                )
            ],
            usage=usage_of(res),
            rstar=extras(res),
        )

    return router


async def _stream(
    svc: SolverService,
    req: SolveRequest,
    model: str,
    fingerprint: str | None,
    include_usage: bool,
    on_error,
    key: str,
) -> AsyncIterator[str]:
    cid, created = completion_id(), int(time.time())

    def chunk(delta: DeltaMessage, finish: str | None = None, usage=None, choices=True) -> str:
        c = ChatCompletionChunk(
            id=cid,
            created=created,
            model=model,
            system_fingerprint=fingerprint,
            choices=[ChunkChoice(delta=delta, finish_reason=finish)] if choices else [],  # type: ignore[arg-type]
            usage=usage,
        )
        return f"data: {c.model_dump_json(exclude_none=True)}\n\n"

    yield chunk(DeltaMessage(role="assistant", content=""))
    event: Event
    async for event in solve_events(svc, req, on_error, key):
        if event.kind == "keepalive":
            yield ": keepalive\n\n"
        elif event.kind == "progress" and event.progress is not None:
            yield chunk(DeltaMessage(reasoning_content=progress_line(event.progress)))
        elif event.kind == "error":
            err = {
                "error": {
                    "message": event.detail,
                    "type": "server_error",
                    "code": str(event.status),
                }
            }
            yield f"data: {json.dumps(err)}\n\n"
        elif event.kind == "result" and event.result is not None:
            res = event.result
            yield chunk(DeltaMessage(reasoning_content=stop_line(res)))
            for piece in render_steps(res):
                yield chunk(DeltaMessage(content=piece))
            yield chunk(DeltaMessage(), finish_reason(res))
            if include_usage:
                yield chunk(DeltaMessage(), usage=usage_of(res), choices=False)
    yield "data: [DONE]\n\n"
