"""One request's search as a task: cancelled when the client goes away, its progress turned into
a stream of events. Shared by `/solve` and the OpenAI-compatible routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from search import SearchProgress
from server.auth import ANONYMOUS
from server.protocol import SolveRequest, SolveResponse
from server.service import SolverService

KEEPALIVE_S = 10.0  # an SSE comment this often while a wave is slow, so proxies keep the stream


class ClientDisconnected(Exception):
    """The client closed the connection; its search was cancelled."""


async def until_disconnect(request: Request, work: Awaitable[Any]) -> Any:
    """Await `work`, cancelling it if the client disconnects first (uvicorn does not cancel a
    handler by itself, so a search would otherwise run on for nobody)."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.create_task(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ClientDisconnected
    finally:
        watcher.cancel()
        if not task.done():  # we were cancelled ourselves
            task.cancel()


@dataclass
class Event:
    kind: str  # "progress" | "result" | "error" | "keepalive"
    progress: SearchProgress | None = None
    result: SolveResponse | None = None
    status: int = 0
    detail: str = ""


async def solve_events(
    svc: SolverService,
    req: SolveRequest,
    on_error: Callable[[BaseException], tuple[int, str]],
    key: str = ANONYMOUS,
) -> AsyncIterator[Event]:
    """Progress after every wave, then the result (or an error). Closing the iterator (the
    client went away: Starlette cancels the streaming response) cancels the search."""
    queue: asyncio.Queue[SearchProgress] = asyncio.Queue()
    task = asyncio.create_task(svc.solve(req, progress=queue.put_nowait, key=key))
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait(
                {getter, task}, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED
            )
            if getter in done:
                yield Event("progress", progress=getter.result())
                continue
            getter.cancel()
            if not done:
                yield Event("keepalive")
                continue
            while not queue.empty():
                yield Event("progress", progress=queue.get_nowait())
            try:
                yield Event("result", result=task.result())
            except Exception as e:
                status, detail = on_error(e)
                yield Event("error", status=status, detail=detail)
            return
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
