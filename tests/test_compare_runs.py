"""Runs from several eval folders compared on the problems they share: the counts, the base,
the sign test, and what it says when runs share nothing or the base is misnamed."""

import json

from benchmarks import compare_runs as cr


def write(folder, algorithm, right):
    folder.mkdir()
    lines = [
        {"algorithm": algorithm, "budget": 1000, "max_tokens": 650, "stop_when": "budget",
         "step_format": "code", "id": pid, "gold": "1", "answer": "1" if ok else "2",
         "correct": ok, "tokens": 600, "seconds": 1.0, "stopped_by": "max_tokens", "error": None}
        for pid, ok in right.items()
    ]  # fmt: skip
    (folder / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return str(folder)


def test_runs_are_compared_on_the_problems_they_share(tmp_path, capsys):
    a = write(tmp_path / "a", "mcts", {"p1": True, "p2": True, "p3": False, "p4": False})
    b = write(tmp_path / "b", "mcts", {"p1": False, "p2": False, "p3": False})
    table = cr.rows(cr.load([a, b]), "a:mcts@650tok")
    assert [(r["run"], r["n"], r["correct"]) for r in table] == [
        ("a:mcts@650tok", 3, 2), ("b:mcts@650tok", 3, 0)
    ]  # fmt: skip
    assert table[0]["vs_base"] is None and table[1]["vs_base"] == (0, 2, 0.5)
    assert cr.main([a, b]) == 0
    assert "+0 −2, sign test p = 0.5" in capsys.readouterr().out
    assert cr.main([a, b, "--base", "c:mcts"]) == 2
    assert "no run 'c:mcts'" in capsys.readouterr().out
    c = write(tmp_path / "c", "mcts", {"p9": True})
    assert cr.main([a, c]) == 1
    assert "no problem every run has" in capsys.readouterr().out
    # --runs leaves c out, so a and b are compared on what they share again
    assert cr.main([a, b, c, "--runs", "a:mcts@650tok,b:mcts@650tok"]) == 0
    assert "3 problems every run has" in capsys.readouterr().out
    assert cr.main([a, c, "--runs", "a:mcts@650tok,x:mcts"]) == 2
    assert "no run 'x:mcts'" in capsys.readouterr().out
