"""Python client for a running rstar server (`POST /solve`), sync and async, with streaming.

    from clients.client import RstarClient

    with RstarClient("http://127.0.0.1:8000") as c:
        res = c.solve("What is 12*7?", budget={"rollouts": 8})
        print(res.answer, res.usage.tokens)
        for event in c.stream("What is 12*7?"):      # ProgressEvent ..., then SolveResponse
            print(event)

`AsyncRstarClient` has the same methods as coroutines / async iterators. Errors come back as
`RstarError` with the HTTP status and the server's message (429/503 carry `retry_after`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse, connect_sse

from search.formats import StepFormatName
from server.protocol import (
    Algorithm,
    BudgetRequest,
    ErrorEvent,
    Health,
    ProgressEvent,
    SolveRequest,
    SolveResponse,
)

DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=900.0, write=30.0, pool=30.0)


class RstarError(Exception):
    def __init__(self, status: int, detail: Any, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {_message(detail)}")
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


def _message(detail: Any) -> str:
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail
        )
    return str(detail)


def _request(
    problem: str,
    algorithm: Algorithm,
    budget: BudgetRequest | dict | None,
    answer: str | None,
    return_tree: bool,
    cache: bool,
    step_format: StepFormatName | None = None,
) -> dict:
    req = SolveRequest(
        problem=problem,
        algorithm=algorithm,
        budget=BudgetRequest.model_validate(budget or {}),
        answer=answer,
        return_tree=return_tree,
        cache=cache,
        step_format=step_format,
    )
    return req.model_dump(mode="json", exclude_none=True)


def _raise_for(r: httpx.Response) -> None:
    if r.status_code < 400:
        return
    try:
        detail = r.json().get("detail", r.text)
    except ValueError:
        detail = r.text
    retry = r.headers.get("Retry-After")
    raise RstarError(r.status_code, detail, float(retry) if retry else None)


def _event(sse: ServerSentEvent) -> ProgressEvent | SolveResponse | None:
    if sse.event == "progress":
        return ProgressEvent.model_validate_json(sse.data)
    if sse.event == "result":
        return SolveResponse.model_validate_json(sse.data)
    if sse.event == "error":
        err = ErrorEvent.model_validate_json(sse.data)
        raise RstarError(err.status, err.detail)
    return None  # comments / unknown events


def _auth_headers(api_key: str | None, headers: Any) -> dict[str, str]:
    """`Authorization: Bearer` from `api_key`, else from RSTAR_API_KEY, when either is set."""
    out = dict(headers or {})
    key = api_key or os.environ.get("RSTAR_API_KEY")
    if key:
        out["Authorization"] = f"Bearer {key}"
    return out


class RstarClient:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        api_key: str | None = None,
        **httpx_kwargs: Any,
    ) -> None:
        httpx_kwargs["headers"] = _auth_headers(api_key, httpx_kwargs.get("headers"))
        self.http = httpx.Client(base_url=base_url, timeout=timeout, **httpx_kwargs)

    def __enter__(self) -> RstarClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def solve(
        self,
        problem: str,
        *,
        algorithm: Algorithm = "mcts",
        budget: BudgetRequest | dict | None = None,
        answer: str | None = None,
        return_tree: bool = False,
        cache: bool = True,
        step_format: StepFormatName | None = None,
    ) -> SolveResponse:
        body = _request(problem, algorithm, budget, answer, return_tree, cache, step_format)
        r = self.http.post("/solve", json=body)
        _raise_for(r)
        return SolveResponse.model_validate_json(r.content)

    def stream(
        self,
        problem: str,
        *,
        algorithm: Algorithm = "mcts",
        budget: BudgetRequest | dict | None = None,
        answer: str | None = None,
        return_tree: bool = False,
        cache: bool = True,
        step_format: StepFormatName | None = None,
    ) -> Iterator[ProgressEvent | SolveResponse]:
        """Progress events while the search runs, then the result. Leaving the loop early
        closes the connection, which cancels the search on the server."""
        body = _request(problem, algorithm, budget, answer, return_tree, cache, step_format)
        with connect_sse(self.http, "POST", "/solve", json=body) as source:
            if source.response.status_code >= 400:
                source.response.read()
                _raise_for(source.response)
            for sse in source.iter_sse():
                event = _event(sse)
                if event is not None:
                    yield event

    def health(self) -> Health:
        return Health.model_validate_json(self.http.get("/healthz").content)

    def ready(self) -> Health:
        return Health.model_validate_json(self.http.get("/readyz").content)


class AsyncRstarClient:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        api_key: str | None = None,
        **httpx_kwargs: Any,
    ) -> None:
        httpx_kwargs["headers"] = _auth_headers(api_key, httpx_kwargs.get("headers"))
        self.http = httpx.AsyncClient(base_url=base_url, timeout=timeout, **httpx_kwargs)

    async def __aenter__(self) -> AsyncRstarClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def solve(
        self,
        problem: str,
        *,
        algorithm: Algorithm = "mcts",
        budget: BudgetRequest | dict | None = None,
        answer: str | None = None,
        return_tree: bool = False,
        cache: bool = True,
        step_format: StepFormatName | None = None,
    ) -> SolveResponse:
        body = _request(problem, algorithm, budget, answer, return_tree, cache, step_format)
        r = await self.http.post("/solve", json=body)
        _raise_for(r)
        return SolveResponse.model_validate_json(r.content)

    async def stream(
        self,
        problem: str,
        *,
        algorithm: Algorithm = "mcts",
        budget: BudgetRequest | dict | None = None,
        answer: str | None = None,
        return_tree: bool = False,
        cache: bool = True,
        step_format: StepFormatName | None = None,
    ) -> AsyncIterator[ProgressEvent | SolveResponse]:
        body = _request(problem, algorithm, budget, answer, return_tree, cache, step_format)
        async with aconnect_sse(self.http, "POST", "/solve", json=body) as source:
            if source.response.status_code >= 400:
                await source.response.aread()
                _raise_for(source.response)
            async for sse in source.aiter_sse():
                event = _event(sse)
                if event is not None:
                    yield event

    async def health(self) -> Health:
        return Health.model_validate_json((await self.http.get("/healthz")).content)

    async def ready(self) -> Health:
        return Health.model_validate_json((await self.http.get("/readyz")).content)
