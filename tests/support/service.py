"""The real solver service and app on a scripted policy, served by a real uvicorn in the test's
own event loop, and what the tests read back from it (metrics, a condition reached in time)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import uvicorn

from models import LoadedModels
from server.app import create_app
from server.service import SolverService
from server.settings import ServerSettings
from tests.support.vllm_server import free_port


def scripted_service(
    sandbox, policy, cache=None, *, reward=None, model_settings=None, **settings
) -> SolverService:
    """A solver service on the scripted policy (and reward model) and the given sandbox (and
    cache, if any); `model_settings` for the model's own settings (its step format, say)."""
    svc = SolverService(
        ServerSettings(**settings),
        model_settings,
        models=LoadedModels(policy, reward),
        sandbox=sandbox,
        cache=cache,
    )
    svc.versions = {"policy": "scripted", "reward_model": "scripted" if reward else None}
    return svc


def metric(svc: SolverService, name: str) -> float:
    """The sum of every sample of `svc`'s metrics whose line starts with `name`."""
    text = svc.metrics.render().decode()
    return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(name))


async def eventually(cond: Callable[[], object], timeout_s: float = 10.0) -> None:
    """Wait, without blocking the loop, until `cond()` holds; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def serving(svc: SolverService) -> AsyncIterator[str]:
    """A real uvicorn server for `svc` on a free port, in this loop; yields its URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(svc, manage_service=False),
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
