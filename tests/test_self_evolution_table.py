"""The self-evolution table: rows from the results the experiment wrote, each compared with the
same algorithm one round earlier by an exact sign test on the problems both ran."""

import json
from pathlib import Path

from benchmarks import self_evolution_table as table


def results(path: Path, algorithm: str, budget: int, correct_ids, ids) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for i in ids:
            ok = i in correct_ids
            rec = {
                "algorithm": algorithm,
                "budget": budget,
                "id": i,
                "correct": ok,
                "answer": "1" if ok or i == "q9" else None,
                "tokens": 100 + 10 * ok,
                "seconds": 1.0,
                "error": None,
            }
            f.write(json.dumps(rec) + "\n")


def test_rows_per_round_compared_with_the_round_before(tmp_path):
    base, evo = tmp_path / "search", tmp_path / "evolution"
    ids = [f"q{i}" for i in range(10)]
    results(base / "gsm8k-greedy/results.jsonl", "greedy", 1, {"q0"}, ids)
    results(base / "gsm8k-search/results.jsonl", "mcts", 4, {"q0", "q1"}, ids)
    results(base / "gsm8k-search/results.jsonl", "mcts", 8, set(ids), ids)  # other budget
    results(evo / "r0/eval/new/results.jsonl", "greedy", 1, {"q0", "q1", "q2"}, ids)
    results(evo / "r1/eval/new/results.jsonl", "greedy", 1, {"q3"}, ids)
    results(evo / "r1-search/results.jsonl", "mcts", 4, {"q0", "q1", "q2", "q3"}, ids)
    (evo / "r1/ppm").mkdir(parents=True)
    (evo / "r1/ppm/rstar-train.json").write_text("{}")

    results(evo / "r0-search/results.jsonl", "mcts", 4, {"q0"}, ids[:3])  # still running
    running: list[str] = []
    rows = table.table(evo, base, budget=4, running=running)
    assert running == ["round 0 MCTS: 3 of 10"]
    assert [(r["stage"], r["algorithm"], r["correct"]) for r in rows] == [
        ("base", "greedy", 1),
        ("base", "mcts", 2),
        ("r0", "greedy", 3),
        ("r1", "greedy", 1),
        ("r1", "mcts", 4),
    ]
    assert rows[2]["vs_previous"][:2] == (2, 0)  # round 0 greedy against the untrained
    assert rows[3]["vs_previous"][:2] == (1, 3)  # round 1 against round 0 (not the untrained)
    assert rows[4]["vs_previous"][:2] == (2, 0) and rows[4]["ppm"]
    md = table.markdown(rows, 4).splitlines()
    # answered: the correct ones and q9; tokens: 100 a problem, 110 when correct
    assert "| untrained default | greedy | 10.0 % | 1 / 10 | – | 20.0 % | 101 |" in md
    # round 0 has no MCTS row: round 1's says what it is compared with
    assert any(
        "MCTS @ 4 (PPM) | 40.0 % | 4 / 10 | vs untrained: 2 / 0, p = 0.50 | 50.0 % | 104 |" in line
        for line in md
    )
    assert table.plot(rows, tmp_path / "p.png", 4).read_bytes().startswith(b"\x89PNG")


def test_equal_token_table_sets_mcts_beside_the_voting_searches(tmp_path):
    evo = tmp_path / "evolution"
    ids = [f"q{i}" for i in range(10)]
    results(evo / "r1/eval/new/results.jsonl", "greedy", 1, {"q0"}, ids)
    tok = evo / "r1-tok/results.jsonl"
    for algorithm, right in [
        ("self_consistency", {"q0", "q1"}),
        ("best_of_n", {"q0", "q1", "q2"}),
        ("mcts", {"q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7"}),
    ]:
        results(tok, algorithm, 1000, right, ids)
    lines = tok.read_text().splitlines()
    tok.write_text("".join(json.dumps({**json.loads(x), "max_tokens": 650}) + "\n" for x in lines))
    head = {
        "report": {
            "dev": {
                "overall": {"accuracy": 0.6, "ci95_by_problem": [0.5, 0.7], "pairs": 30},
                "by_kind": {
                    "terminal": {"accuracy": 0.7, "ci95_by_problem": [0.6, 0.8], "pairs": 20}
                },
            }
        }
    }
    (evo / "r1-head/ppm").mkdir(parents=True)
    (evo / "r1-head/ppm/rstar-head.json").write_text(json.dumps(head))
    md = table.equal_token_table(evo).splitlines()
    assert (
        "| round 1 | 650 tokens | 10.0 % (1/10) · 101 tok | 20.0 % (2/10) · 102 tok | "
        "30.0 % (3/10) · 103 tok | 80.0 % (8/10) · 108 tok | 6 / 0, p = 0.03 | 5 / 0, p = 0.06 |"
    ) in md
    assert "| round 1 | 0.700 [0.600, 0.800] (20) | – | 0.600 [0.500, 0.700] (30) |" in md

    # the plot's points: a run still going (round 2's MCTS, 3 of 10) is left out of its panel
    tok2 = evo / "r2-tok/results.jsonl"
    results(tok2, "self_consistency", 1000, {"q0"}, ids)
    results(tok2, "mcts", 1000, {"q0"}, ids[:3])
    lines = tok2.read_text().splitlines()
    tok2.write_text("".join(json.dumps({**json.loads(x), "max_tokens": 650}) + "\n" for x in lines))
    panels = table.equal_token_points(evo)
    at650 = panels["GSM8K test, first 10: 650 generated tokens"]
    assert [s for s, *_ in at650["MCTS"]] == ["r1"]
    assert [(s, a) for s, a, _, _ in at650["self-consistency"]] == [("r1", 0.2), ("r2", 0.1)]
    assert panels["the round's PPM on the dev set"]["terminal pairs"] == [("r1", 0.7, 0.6, 0.8)]
    png = table.plot_equal_tokens(evo, tmp_path / "t.png")
    assert png.read_bytes().startswith(b"\x89PNG")


def test_a_round_with_a_head_ppm_reads_as_one(tmp_path):
    """A head PPM keeps a head record, not a training record: its round's searches still read
    it, and the round's facts say what it is and how it was chosen."""
    evo = tmp_path / "evolution"
    ids = [f"q{i}" for i in range(4)]
    results(evo / "r2-search/results.jsonl", "best_of_n", 4, {"q0"}, ids)
    (evo / "r2/ppm").mkdir(parents=True)
    (evo / "r2/ppm/rstar-head.json").write_text("{}")
    counts = {"method": "head", "pairs": 12, "problems": 3, "decay": 0.001, "heldout_accuracy": 0.7}
    manifest = {"status": "complete", "phases": {"ppm": {"status": "complete", "counts": counts}}}
    (evo / "r2/manifest.json").write_text(json.dumps(manifest))

    rows = table.table(evo, tmp_path / "search", budget=4, running=[])
    assert [(r["stage"], r["algorithm"], r["ppm"]) for r in rows] == [("r2", "best_of_n", True)]
    assert (
        "  ppm: a linear head on the policy's frozen features, 12 pairs from 3 problems "
        "(decay 0.001, by held-out pairwise accuracy 0.700)"
    ) in table.round_facts(evo).splitlines()
