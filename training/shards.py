"""Generation spread over N workers: which problems a shard searches, its files, and the merge.

A shard run (`--shard I/N`) searches every N-th problem from the I-th, on the same settings and
inputs as the whole round, into `generate/shards/I-of-N.jsonl` (resumable like the whole
round's trees file) with a record beside it (`I-of-N.json`: the digest of the settings
generation reads, the inputs' sha256, the problems and counts). It never writes the round's
manifest, so N workers — local processes or the pods of a Kubernetes Indexed Job — can share
one round directory.

A later run with `--merge-shards N` joins the finished shards into `generate/trees.jsonl` in
the problems' order instead of searching, after checking that every shard ran this round's
configuration on the same inputs and that every problem is there exactly once. Each problem's
search depends only on the problem and the settings (its seeds restart per search), so the
merged trees, and what extraction makes of them, are those of one whole run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from evaluation.jsonl import read_records
from training.generate import SHARDS, TREE_FIELDS, TREES, GenerateCounts, GenerateError
from training.manifest import atomic_write_text

T = TypeVar("T")
# a shard's counts that add up to the round's
SUMMED = ("searched", "failed", "dropped_lines", "correct", "solved", "tokens", "extended",
          "extended_solved")  # fmt: skip


class ShardRecord(BaseModel):
    """What a shard ran, for the merge to check."""

    index: int
    count: int
    generation_sha256: str = Field(description="the round's settings generation reads")
    inputs: dict[str, str | None] = Field(description="input name → sha256 (None: not hashed)")
    problems: int
    status: str = "running"  # or "complete"
    started: str
    finished: str | None = None
    counts: dict[str, Any] = Field(default_factory=dict)


def shard_problems(problems: Sequence[T], index: int, count: int) -> list[T]:
    """Round-robin: shards get easy and hard rows alike wherever a file sorts them."""
    return list(problems[index::count])


def shard_trees(out: Path, index: int, count: int) -> Path:
    return out / SHARDS / f"{index}-of-{count}.jsonl"


def shard_record_path(out: Path, index: int, count: int) -> Path:
    return shard_trees(out, index, count).with_suffix(".json")


def read_shard_record(out: Path, index: int, count: int) -> ShardRecord | None:
    path = shard_record_path(out, index, count)
    if not path.exists():
        return None
    return ShardRecord.model_validate_json(path.read_text())


def write_shard_record(out: Path, rec: ShardRecord) -> None:
    atomic_write_text(
        shard_record_path(out, rec.index, rec.count), rec.model_dump_json(indent=1) + "\n"
    )


def check_resumable(old: ShardRecord | None, new: ShardRecord) -> None:
    """A shard resumes only the same round on the same inputs; else its files must go first."""
    if old is None:
        return
    what = []
    if old.generation_sha256 != new.generation_sha256:
        what.append("search settings")
    if _changed(old.inputs, new.inputs):
        what.append("the inputs (" + ", ".join(_changed(old.inputs, new.inputs)) + ")")
    if what:
        raise GenerateError(
            f"shard {new.index}/{new.count} was started with other {' and '.join(what)}; "
            "delete its files in generate/shards/ to start it again"
        )


def _changed(a: dict[str, str | None], b: dict[str, str | None]) -> list[str]:
    """Inputs hashed on both sides that differ (a model served remotely has no hash here)."""
    return sorted(k for k in set(a) & set(b) if None not in (a[k], b[k]) and a[k] != b[k])


def merge_shards(
    out: Path,
    count: int,
    problems: Sequence[Any],
    generation_sha256: str,
    inputs: dict[str, str | None],
    max_failure_rate: float = 0.0,
) -> GenerateCounts:
    """Join N finished shards into `out/generate/trees.jsonl` (atomically, in the problems'
    order); raise GenerateError naming what is missing or inconsistent."""
    records: list[ShardRecord] = []
    unfinished = []
    for i in range(count):
        rec = read_shard_record(out, i, count)
        if rec is None or rec.status != "complete" or not shard_trees(out, i, count).exists():
            unfinished.append(str(i))
            continue
        records.append(rec)
    if unfinished:
        raise GenerateError(
            f"--merge-shards {count}: shard(s) {', '.join(unfinished)} of {count} not finished "
            f"(run them with --shard I/{count}; their files are in {out / SHARDS})"
        )
    for rec in records:
        if rec.generation_sha256 != generation_sha256:
            raise GenerateError(
                f"shard {rec.index}/{count} searched with other settings than this run's "
                "(the settings generation reads differ: compare --print-config)"
            )
        if changed := _changed(rec.inputs, inputs):
            raise GenerateError(
                f"shard {rec.index}/{count} read other inputs: {', '.join(changed)}"
            )

    order = {str(p.id): k for k, p in enumerate(problems)}
    lines: dict[str, str] = {}
    counts = GenerateCounts(problems=len(problems))
    for rec in records:
        for tree in read_records(shard_trees(out, rec.index, count), TREE_FIELDS):
            pid = str(tree["id"])
            if pid not in order:
                raise GenerateError(f"shard {rec.index}/{count} holds {pid!r}, not a problem here")
            if order[pid] % count != rec.index:
                raise GenerateError(f"shard {rec.index}/{count} holds {pid!r}, another's problem")
            if pid in lines:
                raise GenerateError(f"shard {rec.index}/{count} holds {pid!r} twice")
            lines[pid] = json.dumps(tree, ensure_ascii=False)  # as generate wrote it
        for key in SUMMED:
            setattr(counts, key, getattr(counts, key) + int(rec.counts.get(key) or 0))
    counts.finished = len(lines)
    missing = len(problems) - len(lines)
    if missing and missing / max(1, len(problems)) > max_failure_rate:
        absent = [str(p.id) for p in problems if str(p.id) not in lines]
        raise GenerateError(
            f"{missing} of {len(problems)} problems are in no shard (first: "
            f"{', '.join(absent[:5])}); run their shards again"
        )
    atomic_write_text(out / TREES, "".join(lines[p] + "\n" for p in sorted(lines, key=order.get)))
    return counts
