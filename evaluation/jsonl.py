"""Resumable JSONL: the files a long run appends one record a line to, flushed as each record
finishes (an evaluation's results.jsonl, a round's trees.partial.jsonl), so that a killed run
keeps every finished record and a re-run does only the rest.

The one rule for reading such a file back: a line that is not a JSON object holding the
`required` keys is skipped. A kill can only cut the last line short; before a run appends
again, `prepare_append` truncates an unreadable end away and gives a complete last line its
newline, so the next record starts on a line of its own.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _parse(raw: bytes, required: Sequence[str]) -> dict[str, Any] | None:
    try:
        rec = json.loads(raw)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) and all(k in rec for k in required) else None


def read_records(path: str | Path, required: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
    """Every readable record of `path`, in order (none when it does not exist)."""
    if not Path(path).exists():
        return
    with open(path, "rb") as f:
        for raw in f:
            if (rec := _parse(raw, required)) is not None:
                yield rec


def prepare_append(path: str | Path, required: Sequence[str] = ()) -> int:
    """Make `path` ready for a resumed run's appends (see the module's rule); the number of
    unreadable lines it holds, the cut-off end included."""
    path = Path(path)
    if not path.exists():
        return 0
    unreadable = 0
    good_end = 0  # byte offset just past the last line that reads
    needs_newline = False
    with open(path, "rb") as f:
        offset = 0
        for raw in f:
            offset += len(raw)
            if _parse(raw, required) is None:
                unreadable += raw.strip() != b""
                continue
            good_end = offset
            needs_newline = not raw.endswith(b"\n")
    if path.stat().st_size > good_end:
        os.truncate(path, good_end)
        log.warning("%s: dropped an unfinished last line (an earlier run was killed)", path)
    if needs_newline:
        with open(path, "ab") as f:
            f.write(b"\n")
    return unreadable
