"""The FastAPI app: `POST /solve`, `GET /healthz` (alive), `GET /readyz` (engines and sandbox up).

Errors keep FastAPI's 422 shape (`{"detail": [{"loc", "msg", "type"}]}`) so a client can tell
which field to fix; an overloaded server answers 429 with `Retry-After`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from server.protocol import Health, SolveRequest, SolveResponse
from server.service import LimitExceeded, Overloaded, SolverService


def create_app(service: SolverService | None = None, manage_service: bool = True) -> FastAPI:
    """The app around `service` (a default one if None). With `manage_service`, the app's
    lifespan starts and closes it; tests that share one service pass False."""
    svc = service or SolverService()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_service:
            await svc.start()
        try:
            yield
        finally:
            if manage_service:
                await svc.close()

    app = FastAPI(title="rstar-server", version="0.1.0", lifespan=lifespan)
    app.state.service = svc

    metrics = svc.metrics

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if request.url.path == "/solve":
            metrics.requests.labels("invalid", "422").inc()
        return await request_validation_exception_handler(request, exc)

    @app.exception_handler(LimitExceeded)
    async def _limit(request: Request, exc: LimitExceeded) -> JSONResponse:
        detail = [{"loc": list(exc.loc), "msg": exc.msg, "type": "limit_exceeded"}]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(Overloaded)
    async def _busy(request: Request, exc: Overloaded) -> JSONResponse:
        wait = svc.settings.retry_after_s
        return JSONResponse(
            {"detail": f"the server is busy; retry in {wait}s"},
            status_code=429,
            headers={"Retry-After": str(wait)},
        )

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get("/readyz", response_model=Health)
    async def readyz() -> JSONResponse:
        checks = {
            "sandbox": "ok" if svc.sandbox is not None else "not started",
            "policy": "ok" if svc.models is not None else "not started",
            "reward_model": (
                "none (answer agreement)"
                if svc.models is not None and svc.models.reward_model is None
                else "ok"
                if svc.models is not None
                else "not started"
            ),
        }
        body = Health(status="ok" if svc.ready else "starting", checks=checks)
        return JSONResponse(body.model_dump(), status_code=200 if svc.ready else 503)

    @app.post("/solve", response_model=SolveResponse, response_model_exclude_none=False)
    async def solve(req: SolveRequest) -> SolveResponse:
        t0, status = time.monotonic(), "500"
        try:
            result = await svc.solve(req)
            status = "200"
            return result
        except LimitExceeded:
            status = "422"
            raise
        except Overloaded:
            status = "429"
            raise
        finally:
            metrics.requests.labels(req.algorithm, status).inc()
            metrics.latency.labels(req.algorithm).observe(time.monotonic() - t0)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
