"""benchmarks/final_choice.py: the final answer re-decided offline from an evaluation's
terminal scores, under each choice rule, with the sign test against the default."""

import json

from benchmarks.final_choice import choose, compare, main

# three terminals say 7 with middling scores, one says 9 with the best score
SPLIT = [("7", 0.2, 0.1), ("7.0", 0.1, 0.0), ("7", 0.0, 0.0), ("9", 0.9, 0.5)]


def test_each_rule_picks_what_it_says():
    assert choose(SPLIT, "best") == "9"
    assert choose(SPLIT, "vote") == "7"  # equivalent answers vote together
    assert choose(SPLIT, "weighted_vote") == "7"  # 0.6 + 0.55 + 0.5 against 0.95
    assert choose(SPLIT, "weighted_vote@2") == "9"  # only 9 (0.95) and one 7 (0.6) vote
    assert choose([], "vote") is None


def test_compare_counts_wins_and_losses_against_the_default(tmp_path, capsys):
    recs = [
        {"id": "a", "gold": "7", "tree": {"terminal_scores": SPLIT}},  # vote right, best wrong
        {"id": "b", "gold": "9", "tree": {"terminal_scores": SPLIT}},  # the other way round
        {"id": "c", "gold": "9", "tree": {"terminal_scores": [["9", None, 0.0]]}},
        {"id": "d", "gold": "1", "tree": None},  # no tree: not counted
    ]
    table = compare(recs, ("best", "weighted_vote"))
    # every tree holds its gold answer; the default picks it in two of three
    assert table["gold reached"] == {"problems": 3, "accuracy": 1.0, "picked": round(2 / 3, 4)}
    assert compare(recs, ("best",))["gold reached"]["picked"] is None  # no default to pick
    assert table["weighted_vote"] == {"problems": 3, "accuracy": round(2 / 3, 4)}
    assert table["best"] | {} == {
        "problems": 3, "accuracy": round(2 / 3, 4), "won": 1, "lost": 1, "p": 1.0
    }  # fmt: skip
    path = tmp_path / "results.jsonl"
    fields = {"algorithm": "mcts", "budget": 1000, "max_tokens": 650}
    fields |= {"answer": None, "correct": None, "tokens": 600, "seconds": 1.0}
    path.write_text("".join(json.dumps({**fields, **r}) + "\n" for r in recs))
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "mcts@650tok: 3 problems" in out and "vs weighted_vote: +1 −1" in out
    assert "gold reached      100.0%  (weighted_vote picks it in 67 % of those)" in out
