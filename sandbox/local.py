"""The explicit *unsafe* local backend: the same warm workers, with no jail around them.

Each step still runs in a forked child with a wall clock, an address-space and CPU limit, an
output cap and the audit hook that refuses subprocesses, but it can read and write whatever
the server's user can, and reach the network. For platforms without namespaces (restricted
containers) and for development; chosen only by configuration (RSTAR_SANDBOX=local).
"""

from __future__ import annotations

import sys

from sandbox.pool import WORKER_SOURCE, WorkerPool
from sandbox.settings import SandboxSettings
from search.protocols import ExecLimits


def local_pool(settings: SandboxSettings | None = None) -> WorkerPool:
    s = settings or SandboxSettings(backend="local")
    return WorkerPool(
        "local",
        lambda i: [sys.executable, "-I", "-c", WORKER_SOURCE],
        s.workers,
        ExecLimits(timeout_s=s.timeout_s, memory_mb=s.memory_mb, output_bytes=s.output_bytes),
    )
