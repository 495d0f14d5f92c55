"""Phase 2, extract: training data from the generated trees (or the bootstrap's trajectories).

Per problem, the top-k correct trajectories by mean Q become SFT data (rendered in the bare
prompt style, which the trained policy reads); step preference pairs (+ final-answer pairs)
come from search/extract.py. Everything is written into a temporary directory renamed to
`data/` at the end: trajectories.jsonl, sft.jsonl, ppm_pairs.jsonl and stats.json (problems,
problems solved, trajectories, pairs, steps per trajectory).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evaluation.jsonl import read_records
from search.extract import (
    ExtractStats,
    LabelRules,
    PreferencePair,
    SftExample,
    Trajectory,
    extract,
    merge_stats,
    render_sft,
)
from search.tree import Tree
from training.generate import TRAJECTORIES, TREE_FIELDS, TREES
from training.manifest import replace_dir, temp_dir_for, write_json

DATA = Path("data")
SFT = DATA / "sft.jsonl"
PAIRS = DATA / "ppm_pairs.jsonl"
STATS = DATA / "stats.json"
TRAJ = DATA / "trajectories.jsonl"


class _Sink:
    """Counting JSONL writer."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self.n = 0

    def write(self, rec: Any) -> None:
        self.f.write(rec.model_dump_json() + "\n")
        self.n += 1

    def close(self) -> None:
        self.f.close()


def _from_trees(round_dir: Path, rules: LabelRules) -> Iterator[Any]:
    for rec in read_records(round_dir / TREES, TREE_FIELDS):
        tree = Tree.from_json(json.dumps(rec["tree"]))
        yield rec, extract(tree, rules, problem_id=str(rec["id"]))


def run_extract(round_dir: Path, *, bootstrap: bool, rules: LabelRules) -> dict[str, Any]:
    """Write data/ and return its counts (also in data/stats.json)."""
    final = round_dir / DATA
    tmp = temp_dir_for(final)
    sinks = {
        name: _Sink(tmp / name) for name in ("trajectories.jsonl", "sft.jsonl", "ppm_pairs.jsonl")
    }
    stats: list[ExtractStats] = []
    searched_correct = 0
    try:
        if bootstrap:
            hist: dict[int, int] = {}
            n = 0
            for line in (round_dir / TRAJECTORIES).read_text().split("\n"):
                if not line.strip():
                    continue
                t = Trajectory.model_validate_json(line)
                sinks["trajectories.jsonl"].write(t)
                sinks["sft.jsonl"].write(render_sft(t, "bare"))
                hist[len(t.steps)] = hist.get(len(t.steps), 0) + 1
                n += 1
            stats.append(
                ExtractStats(
                    problems=n,
                    problems_solved=n,
                    trajectories=n,
                    steps_per_trajectory=dict(sorted(hist.items())),
                )
            )
        else:
            for rec, ex in _from_trees(round_dir, rules):
                searched_correct += bool(rec.get("correct"))
                for t in ex.trajectories:
                    sinks["trajectories.jsonl"].write(t)
                    sinks["sft.jsonl"].write(render_sft(t, "bare"))
                for p in ex.pairs:
                    sinks["ppm_pairs.jsonl"].write(p)
                stats.append(ex.stats)
    finally:
        for s in sinks.values():
            s.close()
    total = merge_stats(stats)
    counts: dict[str, Any] = {
        **total.summary(),
        "steps_per_trajectory": {str(k): v for k, v in total.steps_per_trajectory.items()},
        "sft_examples": sinks["sft.jsonl"].n,
        "top_k": rules.top_k,
        "final_pairs_enabled": rules.final_pairs and not bootstrap,
        "supported_only": rules.supported_only and not bootstrap,
        "source": "gsm8k_bootstrap" if bootstrap else "mcts",
    }
    if not bootstrap:
        counts["searched_answer_correct"] = searched_correct
        counts["label_rules"] = rules.model_dump()
    write_json(tmp / "stats.json", counts)
    replace_dir(tmp, final)
    return counts


def read_sft(round_dir: Path) -> list[SftExample]:
    from training.common import read_jsonl

    return read_jsonl(round_dir / SFT, SftExample)


def read_pairs(round_dir: Path) -> list[PreferencePair]:
    from training.common import read_jsonl

    return read_jsonl(round_dir / PAIRS, PreferencePair)
