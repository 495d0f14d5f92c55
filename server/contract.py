"""What the OpenAPI document promises beyond the models: every status a route can answer with
its body, the streaming media types, the Prometheus text of /metrics, and the bearer scheme.

The API key itself is checked by `server.middleware.ApiKeyCheck` (before a body is parsed); the
`bearer` dependency here only puts the scheme into the document.
"""

from __future__ import annotations

from typing import Any

from fastapi.security import HTTPBearer

from server.openai_protocol import ErrorResponse
from server.protocol import ErrorMessage

bearer = HTTPBearer(
    auto_error=False,
    description="an API key (RSTAR_API_KEYS); required only when the server has keys",
)

# keys are optional (a server without them takes every request): `{}` says "or no scheme"
OPTIONAL_AUTH = {"security": [{}]}  # appended to the bearer requirement FastAPI writes

# each server-sent event (OpenAPI 3.2's convention): its `event` name and its `data`, JSON text
SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}
SSE = {"text/event-stream": {"schema": SSE_EVENT}}

_COMMON = {
    401: "missing or unknown API key (only when the server has keys)",
    413: "the body is over RSTAR_MAX_BODY_BYTES",
    429: "the queue is full, or the API key is over its limits (see Retry-After)",
    503: "no search slot within the request's time limit (see Retry-After)",
    500: "the search failed (the message says how)",
    504: "the search overran its deadline",
}


def _errors(model: type, statuses: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": model, "description": why} for code, why in statuses.items()}


SOLVE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": SSE,
        "description": "the result as JSON, or with Accept: text/event-stream "
        "`progress` events, then one `result` or `error` event",
    },
    **_errors(ErrorMessage, _COMMON),
}

CHAT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": SSE,
        "description": "a chat completion, or with stream: true its chunks "
        "as server-sent events ending in `data: [DONE]`",
    },
    **_errors(
        ErrorResponse,
        {
            400: "the body is not a valid request, or asks for more than the server allows",
            404: "no such model (GET /v1/models)",
            **_COMMON,
        },
    ),
}

MODELS_RESPONSES = _errors(ErrorResponse, {401: _COMMON[401]})

METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/plain": {"schema": {"type": "string"}}},
        "description": "Prometheus text exposition format",
    },
    **_errors(ErrorMessage, {401: "missing or unknown API key (RSTAR_METRICS_REQUIRE_KEY)"}),
}


def with_server_limits(spec: dict[str, Any], settings: Any, models: list[str]) -> dict[str, Any]:
    """The document states this server's caps (RSTAR_MAX_*) and model names, so a request the
    schema allows is one the server accepts: a client generated from it learns the limits."""
    schemas = spec.get("components", {}).get("schemas", {})
    model = schemas.get("ChatCompletionRequest", {}).get("properties", {}).get("model")
    if model is not None:
        model["enum"] = models
    caps = {
        "rollouts": settings.max_rollouts,
        "max_tokens": settings.max_tokens,
        "time_limit_s": settings.max_time_limit_s,
    }
    for name, cap in caps.items():
        prop = schemas.get("BudgetRequest", {}).get("properties", {}).get(name, {})
        for variant in prop.get("anyOf", [prop]):
            if variant.get("type") in ("integer", "number"):
                variant["maximum"] = cap
    problem = schemas.get("SolveRequest", {}).get("properties", {}).get("problem")
    if problem is not None:
        problem["maxLength"] = settings.max_problem_chars
        problem["pattern"] = r"\S"  # not blank
    return spec
