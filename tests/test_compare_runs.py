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


def test_a_stopped_vote_is_split_by_how_it_stopped_and_its_ties_counted(tmp_path, capsys):
    """Against the base, a run a stop rule ended early shows its wins and losses per stop reason;
    a vote over kept chains shows its ties and the accuracy expected with ties as coin tosses."""

    def rec(pid, stop_when, stopped_by, ends, answer, correct):
        return {"algorithm": "self_consistency", "budget": 4, "max_tokens": None,
                "stop_when": stop_when, "step_format": "code", "id": pid, "gold": "1",
                "answer": answer, "correct": correct, "tokens": 100, "seconds": 1.0,
                "stopped_by": stopped_by,
                "error": None, "tree": {"ends": ends}}  # fmt: skip

    tie = [["1", 2, 50], ["2", 2, 50]]  # one vote each: a coin toss, the gold half the time
    lines = [
        rec("p1", "budget", "finished", tie, "1", True),
        rec("p2", "budget", "finished", [["1", 2, 50]] * 3, "1", True),
        rec("p1", "confident", "finished", tie[::-1], "2", False),
        rec("p2", "confident", "settled", [["3", 2, 50]] * 2, "3", False),
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    table = cr.rows(cr.load([str(tmp_path)]), f"{tmp_path.name}:self_consistency@4")
    fixed, stopped = table
    assert fixed["ties"] == (1, 1.5) and fixed["vs_base_by_stop"] is None
    assert stopped["ties"] == (1, 0.5)
    assert stopped["vs_base"][:2] == (0, 2)
    assert stopped["vs_base_by_stop"] == {"finished": (0, 1), "settled": (0, 1)}
    assert cr.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "by how it stopped: finished: +0 −1; settled: +0 −1" in out
    assert "votes tied on 1; ties as coin tosses: 1.5 correct expected (75.0 %)" in out
