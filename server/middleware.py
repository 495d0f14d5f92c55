"""What every request passes before a route parses it: the body's size, then the API key.

Both are ASGI middlewares rather than route dependencies so that they answer before FastAPI
reads and parses a body: a huge body costs nothing but its headers, and a request without a
key gets its 401 whatever its body holds.
"""

from __future__ import annotations

import json
from typing import Any

from server.auth import ApiKeys, Unauthorized

PROTECTED = ("/solve", "/v1/")


def _json_response(status: int, body: dict, headers: dict[str, str] | None = None):
    data = json.dumps(body).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    hdrs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]

    async def send_to(send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": data})

    return send_to


def error_body(path: str, message: str, type_: str, code: str | None) -> dict:
    """The API's own error shape: OpenAI's on /v1/*, FastAPI's `detail` elsewhere."""
    if path.startswith("/v1/"):
        return {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return {"detail": message}


class BodyLimit:
    """413 for a body over `max_bytes`: at once when Content-Length says so, else as soon as
    the bytes read pass it."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]

        async def too_big(send: Any) -> None:
            msg = (
                f"the request body is over {self.max_bytes} bytes (RSTAR_MAX_BODY_BYTES); "
                "send a shorter problem or fewer messages"
            )
            body = error_body(path, msg, "invalid_request_error", "request_too_large")
            await _json_response(413, body)(send)

        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                return await too_big(send)
        seen, started, refused = 0, False, False

        async def counted() -> dict:
            nonlocal seen, started, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True  # answer now; the app sees a client that went away
                    if not started:
                        started = True
                        await too_big(send)
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: dict) -> None:
            nonlocal started
            if refused:
                return  # the 413 is the answer
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, tracked)


class ApiKeyCheck:
    """401 on /solve and /v1/* (and /metrics if asked) without a configured key; the caller's
    key name goes to `request.state.api_key` for limits and metrics."""

    def __init__(self, app: Any, keys: ApiKeys, protect_metrics: bool = False) -> None:
        self.app, self.keys = app, keys
        self.protected = (*PROTECTED, "/metrics") if protect_metrics else PROTECTED

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        auth = next(
            (v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"authorization"),
            None,
        )
        try:
            name = self.keys.identify(auth)
        except Unauthorized as e:
            if path.startswith(self.protected):
                body = error_body(path, str(e), "invalid_request_error", "invalid_api_key")
                return await _json_response(401, body, {"WWW-Authenticate": "Bearer"})(send)
            name = None
        scope.setdefault("state", {})["api_key"] = name
        await self.app(scope, receive, send)
