"""The self-evolution table: rows from the reports the experiment wrote, the larger of two runs
of the same model and algorithm, and the like-for-like column on the smallest run's problems."""

import json
from pathlib import Path

from benchmarks import self_evolution_table as table


def report(path: Path, algorithm: str, budget: int, correct_ids, ids, ppm=None) -> None:
    records = [{"id": i, "correct": i in correct_ids} for i in ids]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "models": {"policy_engine": "vllm", "reward_model": ppm},
                "runs": [
                    {
                        "algorithm": algorithm,
                        "budget": budget,
                        "accuracy": len(correct_ids) / len(ids),
                        "correct": len(correct_ids),
                        "n": len(ids),
                        "answered": len(ids) - 1,
                        "mean_tokens": 100.0,
                        "records": records,
                    }
                ],
            }
        )
    )


def test_rows_keep_the_larger_run_and_score_every_row_on_the_smallest(tmp_path):
    ids20 = [f"q{i}" for i in range(20)]
    ids200 = [f"q{i}" for i in range(200)]
    report(tmp_path / "base/report.json", "greedy", 1, {"q0", "q50"}, ids200)
    report(tmp_path / "r1/eval/new/report.json", "greedy", 1, set(), ids20, ppm="r1/ppm")
    report(tmp_path / "r1-greedy/report.json", "greedy", 1, {"q1", "q2", "q150"}, ids200)
    report(tmp_path / "r1-mcts/report.json", "mcts", 4, {"q1"}, ids20[:5], ppm="r1/ppm")

    rows = table.rows(tmp_path)
    assert [(r["model"].split(":")[0], r["algorithm"], r["n"]) for r in rows] == [
        ("default model, no training", "greedy", 200),
        ("round 1", "greedy", 200),  # the 200-problem run, not the round's own 20
        ("round 1", "mcts", 5),
    ]
    md = table.markdown(rows).splitlines()
    assert "on the first 5" in md[0]
    assert "| 1.0 % | 2 / 200 | 20.0 % (1 / 5) | 199 / 200 |" in md[2]
    assert "| 1.5 % | 3 / 200 | 40.0 % (2 / 5) |" in md[3]
    assert "mcts @ 4 (PPM)" in md[4]
