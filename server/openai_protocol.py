"""Request and response models of the OpenAI-compatible routes (`/v1/chat/completions`,
`/v1/models`), in the OpenAI API's shapes so its SDKs work unchanged.

Fields of the OpenAI request that do not apply to a search (temperature, top_p, seed, stop, …)
are accepted and ignored, as other OpenAI-compatible servers do; fields nobody defines are
refused. rStar's own knobs travel as extra body fields: `algorithm`, `budget`, `cache`,
`step_format`.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from search.formats import StepFormatName
from server.protocol import Algorithm, BudgetRequest, JsonInt, PositiveJsonInt, integral

MODEL_PREFIX = "rstar-"


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text or "" for p in self.content or [] if p.type == "text")


class StreamOptions(BaseModel):
    include_usage: bool = False


MAX_MESSAGES = 256  # a conversation longer than this is not a math problem


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(..., description="rstar-<algorithm>, e.g. rstar-mcts (see /v1/models)")
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    max_tokens: PositiveJsonInt | None = None
    max_completion_tokens: PositiveJsonInt | None = None
    n: Annotated[int, Ge(1), Le(1), BeforeValidator(integral)] = Field(
        1, description="one completion per request"
    )
    # OpenAI sampling fields: the search samples with its own settings.
    temperature: float | None = None
    top_p: float | None = None
    seed: JsonInt | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    # rStar extensions (extra_body in the SDK)
    algorithm: Algorithm | None = Field(None, description="overrides the model's algorithm")
    budget: BudgetRequest | None = Field(None, description="overrides reasoning_effort")
    cache: bool = True
    step_format: StepFormatName | None = Field(
        None, description="code or text steps; unset: the server's (RSTAR_STEP_FORMAT)"
    )


class ChatCompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None


class Choice(BaseModel):
    index: int = 0
    message: ChatCompletionMessage
    finish_reason: Literal["stop", "length"]


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=completion_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    system_fingerprint: str | None = None
    choices: list[Choice]
    usage: CompletionUsage
    rstar: dict[str, Any] = Field(
        default_factory=dict, description="the search's answer, score and full usage"
    )


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rstar"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
