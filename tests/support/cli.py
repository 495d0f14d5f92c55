"""The `rstar` command as a user runs it: a child process with this interpreter."""

from __future__ import annotations

import os
import subprocess
import sys

RSTAR = [sys.executable, "-m", "clients.cli"]


def rstar(*args: str, env: dict[str, str] | None = None, timeout: float = 900,
          input: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run `rstar ARGS` (stdin from `input`), capturing its output as text."""
    return subprocess.run(
        [*RSTAR, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        env={**os.environ, **(env or {})},
    )
