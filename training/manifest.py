"""The round's record (OUT/manifest.json) and the file-system helpers every phase shares.

The manifest holds the configuration and its identity digest, the inputs with their sha256,
a record per phase (status, reason, times, outputs, counts), the data counts, the metrics, the
checkpoints written and what the next round takes. It is rewritten atomically after every
change of state, so it always describes what is on disk: a phase is `complete` only once its
outputs have been renamed into place.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from evaluation.problems import file_sha256
from training.common import TRAINING_RECORD
from training.config import PHASES

MANIFEST = "manifest.json"
FORMAT = "rstar-round/1"

PhaseStatus = Literal["pending", "running", "complete", "skipped", "failed", "interrupted"]
DONE = ("complete", "skipped")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class PhaseRecord(BaseModel):
    status: PhaseStatus = "pending"
    reason: str | None = None  # why skipped, failed, or pending again
    started: str | None = None
    finished: str | None = None
    seconds: float | None = None
    outputs: list[str] = Field(default_factory=list)  # relative to the round's directory
    counts: dict[str, Any] = Field(default_factory=dict)
    # weights trained again from the recorded data and settings, their outputs having gone
    # (each: when, seconds, and whether the counts came out as recorded)
    rebuilds: list[dict[str, Any]] = Field(default_factory=list)
    # weights merged from the committed adapter onto the init model (each: when, seconds)
    restores: list[dict[str, Any]] = Field(default_factory=list)


class InputRecord(BaseModel):
    """A file or model the round read. `sha256`: of the file, or of a model directory's files
    (each file's relative path and sha256, in order); None for hub ids and remote models."""

    kind: Literal["file", "model", "hub", "remote", "none"]
    given: str | None
    path: str | None = None
    sha256: str | None = None
    version: str | None = None  # models: a digest of file names, sizes and times
    rows: int | None = None
    # a trained checkpoint's recipe (training.common.fingerprint): one rebuilt from the
    # same recipe stands for it even where its bytes differ
    recipe: str | None = None


class Manifest(BaseModel):
    format: str = FORMAT
    status: Literal["running", "complete", "incomplete", "failed", "interrupted"] = "running"
    round: int | None = None
    mode: Literal["mcts", "bootstrap"] = "mcts"
    created: str = Field(default_factory=now)
    updated: str = Field(default_factory=now)
    config: dict[str, Any] = Field(default_factory=dict)
    identity_sha256: str = ""
    inputs: dict[str, InputRecord] = Field(default_factory=dict)
    phases: dict[str, PhaseRecord] = Field(
        default_factory=lambda: {p: PhaseRecord() for p in PHASES}
    )
    data: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, str | None] = Field(default_factory=dict)
    next_round: dict[str, Any] = Field(default_factory=dict)
    runs: list[dict[str, Any]] = Field(default_factory=list)

    @classmethod
    def load(cls, out: Path) -> Manifest | None:
        path = out / MANIFEST
        if not path.exists():
            return None
        return cls.model_validate_json(path.read_text())

    def save(self, out: Path) -> None:
        self.updated = now()
        atomic_write_text(out / MANIFEST, self.model_dump_json(indent=2) + "\n")

    def done(self, phase: str) -> bool:
        return self.phases[phase].status in DONE


# --- files ---------------------------------------------------------------------------------------


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def temp_dir_for(final: Path) -> Path:
    """A fresh directory next to `final`, for a phase to fill and `replace_dir` into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))


def replace_dir(tmp: Path, final: Path) -> None:
    """Move `tmp` to `final`; an existing `final` is moved aside first and removed after, so
    `final` is always either the old directory or the new one, whole."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_temp_dirs(out: Path) -> None:
    """Leftovers of a phase killed before its rename (only names this package makes)."""
    for p in out.glob(".*.tmp-*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def dir_sha256(path: Path) -> str:
    """A model directory's content digest: every file's relative path and sha256, in order
    (rstar-train.json, which records timings, excluded)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if rel == TRAINING_RECORD or any(part.startswith(".") for part in f.parts[-1:]):
            continue
        h.update(f"{rel}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


class RoundBusy(RuntimeError):
    """Another run holds the round directory."""


@contextlib.contextmanager
def round_lock(out: Path, name: str = ".lock", what: str | None = None) -> Iterator[None]:
    """One run per round directory (or per `what` in it, e.g. a shard) at a time."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / name, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RoundBusy(f"another train_round is running on {what or out}") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
