"""The `rstar` command as a user runs it (a child process with this interpreter), and what it
leaves behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

RSTAR = [sys.executable, "-m", "clients.cli"]


def rstar(
    *args: str, env: dict[str, str] | None = None, timeout: float = 900, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `rstar ARGS` (stdin from `input`), capturing its output as text."""
    return subprocess.run(
        [*RSTAR, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        env={**os.environ, **(env or {})},
    )


def page_result(page: Path) -> dict[str, Any]:
    """The search result a page written by `rstar solve --html` carries inside it."""
    m = re.search(
        r'<script type="application/json" id="rstar-embedded">(.*?)</script>',
        page.read_text(encoding="utf-8"),
        re.S,
    )
    assert m, f"{page}: no embedded result"
    return json.loads(m.group(1))
