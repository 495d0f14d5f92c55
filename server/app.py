"""The FastAPI app: `POST /solve` (JSON, or server-sent events with `Accept: text/event-stream`),
the OpenAI-compatible `/v1/...` routes, `GET /healthz` (alive), `GET /readyz` (engines, sandbox
and cache), Prometheus `GET /metrics`, and the search-tree page at `GET /ui/` (`GET /` leads
there).

Errors on `/solve` keep FastAPI's 422 shape (`{"detail": [{"loc", "msg", "type"}]}`) so a client
can tell which field to fix; `/v1/...` errors use OpenAI's (`{"error": {"message", "type",
"param", "code"}}`, 400 for a bad body) so its SDKs raise the right exception. An overloaded
server answers 429 (queue full) or 503 (deadline passed in the queue) with `Retry-After`; a
search that overruns its deadline, 504; one that fails, 500 with the error in the same shape.
A client that disconnects cancels its search.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.sse import format_sse_event
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

from server.admission import retry_after
from server.auth import ApiKeys, key_name
from server.contract import (
    METRICS_RESPONSES,
    OPTIONAL_AUTH,
    SOLVE_RESPONSES,
    bearer,
    with_server_limits,
)
from server.lifecycle import ClientDisconnected, solve_events, until_disconnect
from server.logs import RequestIdMiddleware
from server.middleware import ApiKeyCheck, BodyLimit
from server.openai_api import OpenAIError, model_ids, openai_router
from server.protocol import ErrorEvent, Health, ProgressEvent, SolveRequest, SolveResponse
from server.service import (
    DeadlineExceeded,
    LimitExceeded,
    Overloaded,
    SearchFailed,
    SolverService,
)
from server.ui_page import UI_DIR

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # nginx's code for "client closed the request": only ever in logs/metrics


def _openai_error(
    status: int,
    message: str,
    type_: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _is_openai(request: Request) -> bool:
    return request.url.path.startswith("/v1/")


def create_app(service: SolverService | None = None, manage_service: bool = True) -> FastAPI:
    """The app around `service` (a default one if None). With `manage_service`, the app's
    lifespan starts and closes it; tests that share one service pass False."""
    svc = service or SolverService()
    metrics = svc.metrics

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_service and not svc.ready:  # `python -m server` starts it before it listens
            await svc.start()
        try:
            yield
        finally:
            if manage_service:
                await svc.close()

    app = FastAPI(title="rstar-server", version="0.1.0", lifespan=lifespan)
    app.state.service = svc
    s = svc.settings
    keys = ApiKeys.load(s.api_keys.get_secret_value() if s.api_keys else None, s.api_keys_file)
    if keys.enabled:
        log.info("API keys on: %d key(s) (%s)", len(keys.keys), ", ".join(keys.keys))
    # outermost first: the request id, then the body's size, then the key
    app.add_middleware(ApiKeyCheck, keys=keys, protect_metrics=s.metrics_require_key)
    app.add_middleware(BodyLimit, max_bytes=s.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)

    def error_status(exc: BaseException) -> tuple[int, str]:
        """Status and message of an exception raised by a search (also for streamed errors)."""
        if isinstance(exc, Overloaded):
            return exc.status, exc.msg
        if isinstance(exc, DeadlineExceeded):
            return 504, str(exc)
        if isinstance(exc, LimitExceeded):
            return 422, exc.msg
        log.exception("search failed", exc_info=exc)
        return 500, f"the search failed: {type(exc).__name__}: {exc}"

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if request.url.path == "/solve":
            metrics.requests.labels("invalid", "422").inc()
        if _is_openai(request):
            err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid body"}
            param = ".".join(str(p) for p in err["loc"] if p != "body") or None
            return _openai_error(
                400, f"{param or 'body'}: {err['msg']}", "invalid_request_error", param
            )
        return await request_validation_exception_handler(request, exc)

    @app.exception_handler(LimitExceeded)
    async def _limit(request: Request, exc: LimitExceeded) -> JSONResponse:
        if _is_openai(request):
            return _openai_error(400, exc.msg, "invalid_request_error", ".".join(exc.loc[1:]))
        detail = [{"loc": list(exc.loc), "msg": exc.msg, "type": "limit_exceeded"}]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(Overloaded)
    async def _busy(request: Request, exc: Overloaded) -> JSONResponse:
        wait = exc.retry_after_s if exc.retry_after_s is not None else svc.settings.retry_after_s
        headers = {"Retry-After": str(retry_after(wait))}
        if _is_openai(request):
            return _openai_error(exc.status, exc.msg, "rate_limit_exceeded", headers=headers)
        return JSONResponse({"detail": exc.msg}, status_code=exc.status, headers=headers)

    @app.exception_handler(DeadlineExceeded)
    async def _late(request: Request, exc: DeadlineExceeded) -> JSONResponse:
        if _is_openai(request):
            return _openai_error(504, str(exc), "timeout")
        return JSONResponse({"detail": str(exc)}, status_code=504)

    @app.exception_handler(SearchFailed)
    async def _failed(request: Request, exc: SearchFailed) -> JSONResponse:
        if _is_openai(request):
            return _openai_error(500, str(exc), "server_error")
        return JSONResponse({"detail": str(exc)}, status_code=500)

    @app.exception_handler(ClientDisconnected)
    async def _gone(request: Request, exc: ClientDisconnected) -> Response:
        log.info("client disconnected; search cancelled")
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(OpenAIError)
    async def _openai(request: Request, exc: OpenAIError) -> JSONResponse:
        return _openai_error(exc.status, exc.message, exc.type, exc.param, exc.code)

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Health,
        responses={503: {"model": Health, "description": "still starting"}},
    )
    async def readyz() -> JSONResponse:
        started = svc.models is not None
        checks = {
            "sandbox": "ok" if svc.sandbox is not None else "not started",
            "policy": "ok" if started else "not started",
            "reward_model": "not started"
            if not started
            else ("none (answer agreement)" if svc.models.reward_model is None else "ok"),  # type: ignore[union-attr]
            # A cache that is down does not make the server unready: requests run without it.
            "cache": _cache_state(svc.cache),
        }
        body = Health(status="ok" if svc.ready else "starting", checks=checks)
        return JSONResponse(body.model_dump(), status_code=200 if svc.ready else 503)

    @app.post(
        "/solve",
        response_model=SolveResponse,
        responses=SOLVE_RESPONSES,
        dependencies=[Depends(bearer)],
        openapi_extra=OPTIONAL_AUTH,
    )
    async def solve(req: SolveRequest, request: Request):
        t0, status, streaming = time.monotonic(), "500", False
        try:
            if "text/event-stream" in request.headers.get("accept", ""):
                svc.budget(req)  # a bad budget is still a 422, before the stream starts
                svc.check_admission(key_name(request))  # and a full queue a 429
                streaming = True  # the stream counts itself when it ends
                return StreamingResponse(
                    _events(req, t0, key_name(request)),
                    media_type="text/event-stream",
                    headers={"Cache-Control": "no-cache"},
                )
            result = await until_disconnect(request, svc.solve(req, key=key_name(request)))
            status = "200"
            return result
        except ClientDisconnected:
            status = str(CLIENT_CLOSED)
            raise
        except Exception as e:
            code, msg = error_status(e)
            status = str(code)
            if code == 500:  # answered in the API's error shape, not as a bare 500
                raise SearchFailed(msg) from e
            raise
        finally:
            if not streaming:
                metrics.requests.labels(req.algorithm, status).inc()
                metrics.latency.labels(req.algorithm).observe(time.monotonic() - t0)

    async def _events(req: SolveRequest, t0: float, key: str) -> AsyncIterator[bytes]:
        status = str(CLIENT_CLOSED)
        try:
            async for event in solve_events(svc, req, error_status, key):
                if event.kind == "keepalive":
                    yield format_sse_event(comment="keepalive")
                elif event.kind == "progress" and event.progress is not None:
                    data = ProgressEvent.model_validate(event.progress, from_attributes=True)
                    yield format_sse_event(event="progress", data_str=data.model_dump_json())
                elif event.kind == "result" and event.result is not None:
                    status = "200"
                    yield format_sse_event(event="result", data_str=event.result.model_dump_json())
                elif event.kind == "error":
                    status = str(event.status)
                    err = ErrorEvent(status=event.status, detail=event.detail)
                    yield format_sse_event(event="error", data_str=err.model_dump_json())
        finally:
            if status == str(CLIENT_CLOSED):
                log.info("client disconnected from the stream; search cancelled")
            metrics.requests.labels(req.algorithm, status).inc()
            metrics.latency.labels(req.algorithm).observe(time.monotonic() - t0)

    app.include_router(openai_router(svc, error_status))

    @app.get("/metrics", response_class=PlainTextResponse, responses=METRICS_RESPONSES)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/ui/")

    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = with_server_limits(FastAPI.openapi(app), svc.settings, model_ids())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _cache_state(cache) -> str:
    if cache is None:
        return "off"
    return f"{cache.backend}: {'ok' if getattr(cache, 'available', True) else 'down'}"
