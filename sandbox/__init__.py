"""Running step code: warm workers in nsjail (default) or, only by choice, unjailed."""

from __future__ import annotations

import logging

from sandbox.pool import SandboxStats, SandboxUnavailable, WorkerPool, failure_kind
from sandbox.settings import SandboxSettings

log = logging.getLogger(__name__)


def create_sandbox(settings: SandboxSettings | None = None) -> WorkerPool:
    """The configured sandbox (not started: call `start()` to fail fast at start-up)."""
    s = settings or SandboxSettings()
    if s.backend == "local":
        from sandbox.local import local_pool

        log.warning(
            "RSTAR_SANDBOX=local: step code runs WITHOUT isolation, with the server's own "
            "permissions, files and network. Use it only where nsjail cannot run."
        )
        return local_pool(s)
    from sandbox.nsjail import nsjail_pool

    return nsjail_pool(s)


__all__ = [
    "SandboxSettings",
    "SandboxStats",
    "SandboxUnavailable",
    "WorkerPool",
    "create_sandbox",
    "failure_kind",
]
