"""The problem sets an evaluation runs on: JSONL rows with gold answers, checked in full before
anything starts, so a broken file fails at once with every bad row named `file:line` instead
of hours into a run (the round trainer's training and held-out sets load the same way).

    problems = load_problems("gsm8k_test.jsonl", limit=50)      # DataError names file:line
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """The problem file cannot be used; the message names file:line and what is wrong."""


@dataclass(frozen=True, slots=True)
class Problem:
    id: str
    problem: str
    answer: str
    line: int


def _gold(value: Any) -> str | None:
    """The gold answer as a string; a GSM8K-style solution keeps what follows its `####`."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        value = value.rsplit("####", 1)[-1].strip()
        return value or None
    return None


def load_problems(
    path: str | Path, *, offset: int = 0, limit: int | None = None, max_errors: int = 10
) -> list[Problem]:
    """Rows `{"problem" (or "question"), "answer", "id" (optional)}`, checked in full before
    anything runs: every broken row is reported as `file:line: what is wrong`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows: list[Problem] = []
    errors: list[str] = []
    first_line: dict[str, int] = {}
    try:
        # "\n" only: JSON strings may hold other Unicode line breaks (U+2028 in GSM8K train)
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"{where}: not valid JSON ({e.msg}, column {e.colno})")
            continue
        if not isinstance(row, dict):
            errors.append(f"{where}: expected a JSON object, got {type(row).__name__}")
            continue
        text = row["problem"] if "problem" in row else row.get("question")
        gold = _gold(row.get("answer"))
        missing = []
        if not isinstance(text, str) or not text.strip():
            missing.append("a non-empty 'problem' (or 'question') string")
        if "answer" not in row:
            missing.append("an 'answer' field")
        elif gold is None:
            missing.append(
                f"a usable 'answer' (a non-empty string or a number; got {row['answer']!r})"
            )
        if missing:
            errors.append(f"{where}: missing {' and '.join(missing)}")
            continue
        pid = str(row.get("id", f"{path.stem}-{len(rows)}"))
        if pid in first_line:
            errors.append(f"{where}: duplicate id {pid!r} (first on line {first_line[pid]})")
            continue
        first_line[pid] = lineno
        rows.append(Problem(pid, text, gold, lineno))  # type: ignore[arg-type]
    if errors:
        more = f"\n… and {len(errors) - max_errors} more" if len(errors) > max_errors else ""
        raise DataError(
            f"{path}: {len(errors)} unusable row(s):\n" + "\n".join(errors[:max_errors]) + more
        )
    if not rows:
        raise DataError(f"{path}: no problems in the file")
    if offset < 0 or (limit is not None and limit < 1):
        raise DataError("--offset must be >= 0 and --limit >= 1")
    selected = rows[offset : None if limit is None else offset + limit]
    if not selected:
        raise DataError(f"{path}: only {len(rows)} problems, none left after offset {offset}")
    return selected


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_held_out(key: str, share: float) -> bool:
    """Is the problem `key` among the `share` of problems a trainer holds out? Stable across
    runs and rounds: the same problem is always on the same side."""
    if share <= 0:
        return False
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return h / 2**64 < share
