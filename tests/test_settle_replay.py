"""The stop-rule replay: on chains made by the real self-consistency (scripted policy, real
nsjail sandbox) spent in full, it answers, starts and spends what the search run under each rule
did; by hand, a chain cut short is counted pro rata and the table's sign test reads right."""

import json

import pytest

from benchmarks import settle_replay as sr
from search import Budget, Components, run_search
from search.tree_stats import tree_stats
from tests.support.scripted import ScriptedPolicy, six_or_seven, thirty


@pytest.mark.parametrize(
    ("script", "rule", "confidence"),
    [
        (thirty, "confident", 0.95),  # four agreeing votes
        (thirty, "unbeatable", 0.95),  # eight of twelve
        (thirty, "confident", 0.9),  # three
        (six_or_seven, "confident", 0.6),  # a split vote never settles
    ],
)
async def test_a_replay_spends_what_the_search_under_the_rule_spent(
    script, rule, confidence, sandbox
):
    full = await run_search(
        "self_consistency", "p", Components(ScriptedPolicy(default=script), sandbox),
        Budget(rollouts=12),
    )  # fmt: skip
    ends = tree_stats(full.tree, full.usage)["ends"]
    assert len(ends) == 12
    stopped = await run_search(
        "self_consistency", "p", Components(ScriptedPolicy(default=script), sandbox),
        Budget(rollouts=12, stop_when=rule, settle_confidence=confidence),
    )  # fmt: skip
    got = sr.replay([tuple(e) for e in ends], rule, confidence)
    assert got.chains == stopped.usage.rollouts
    assert got.tokens == stopped.usage.tokens
    assert got.answer == stopped.answer
    assert sr.replay([tuple(e) for e in ends], "budget").tokens == full.usage.tokens


def test_a_chain_in_flight_when_the_rule_fires_counts_its_steps_so_far():
    # four 1-step chains agree at once (P = 31/32); the 4-step one made 1 of its 4 steps
    chains = [("5", 1, 10)] * 3 + [("9", 4, 40)] + [("5", 1, 10)] * 4
    got = sr.replay(chains, "confident", 0.95)
    assert got.answer == "5" and got.chains == 7
    assert got.tokens == pytest.approx(6 * 10 + 40 * 2 / 4)
    assert sr.replay(chains, "budget") == sr.Replayed("5", 8, 110)


def test_dropped_chains_cast_no_vote():
    chains = [(None, 2, 20)] * 4 + [("3", 1, 5)]
    assert sr.replay(chains, "confident", 0.95) == sr.Replayed("3", 5, 85)
    assert sr.replay([(None, 1, 5)], "budget").answer is None


def test_the_table_compares_each_rule_with_the_full_budget(tmp_path, capsys):
    agree = [["7", 1, 10]] * 8
    late = [["2", 1, 10]] * 4 + [["7", 1, 10]] * 5  # the first four settle on the wrong answer
    records = [
        {"algorithm": "self_consistency", "budget": len(ends), "max_tokens": None,
         "stop_when": "budget", "step_format": "code", "id": f"p{i}", "gold": "7",
         "answer": "7", "correct": True, "tokens": 10 * len(ends), "seconds": 1.0, "error": None,
         "tree": {"ends": ends}}
        for i, ends in enumerate([agree, late])
    ]  # fmt: skip
    table = sr.compare(records, ["confident:0.95", "unbeatable"], seed=None)
    assert table["budget"]["accuracy"] == 1.0 and table["budget"]["mean_tokens"] == 85.0
    row = table["confident:0.95"]
    assert (row["accuracy"], row["won"], row["lost"], row["mean_chains"]) == (0.5, 0, 1, 4.0)
    assert row["tokens_saved"] == pytest.approx(1 - 80 / 170, abs=1e-4)
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert sr.main([str(path), "--rules", "confident:0.95"]) == 0
    shown = capsys.readouterr().out
    assert "self_consistency@8" in shown and "sign test p = " in shown
    for bad in ("sometimes", "confident:0.5", "confident:1"):  # what a search's Budget refuses
        with pytest.raises(SystemExit):
            sr.main([str(path), "--rules", bad])
    with pytest.raises(SystemExit):
        sr.main([str(path), "--orders", "0"])


def test_smaller_budgets_replay_fewer_chains_and_the_rule_adopted_is_named(tmp_path, capsys):
    late = [["2", 1, 10]] * 4 + [["7", 1, 10]] * 12  # sixteen chains vote 7; eight tie, 2 first
    records = [
        {"algorithm": "self_consistency", "budget": 16, "max_tokens": None,
         "stop_when": "budget", "step_format": "code", "id": "p", "gold": "7", "answer": "7",
         "correct": True, "tokens": 160, "seconds": 1.0, "error": None, "tree": {"ends": late}}
    ]  # fmt: skip
    assert sr.compare(records, [])["budget"]["accuracy"] == 1.0
    at8 = sr.compare(records, [], chains_cap=8, seed=None)["budget"]
    assert (at8["mean_chains"], at8["mean_tokens"], at8["accuracy"]) == (8, 80, 0.0)
    table = {
        "budget": {"tokens_saved": 0.0},
        "a": {"net_lost": 3, "tokens_saved": 0.6},
        "b": {"net_lost": 2, "tokens_saved": 0.4},
        "c": {"net_lost": 0, "tokens_saved": 0.1},
    }
    assert sr.chosen(table, max_net_loss=2) == "b"
    assert sr.chosen(table, max_net_loss=3) == "a"
    assert sr.chosen(table, max_net_loss=0) == "c"
    assert sr.chosen(table, max_net_loss=-1) is None
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(records[0]) + "\n")
    assert sr.main([str(path), "--chains", "8", "--max-net-loss", "0"]) == 0
    shown = capsys.readouterr().out
    assert "self_consistency@16, 8 of its chains: 1 problems" in shown
    assert shown.count("chosen (most saved, at most 0 lost net)") == 2
    assert sr.main([str(path), "--chains", "16"]) == 0
    assert "of its chains" not in capsys.readouterr().out  # no second table of the run itself


def test_each_step_format_is_a_run_of_its_own(tmp_path, capsys):
    records = [
        {"algorithm": "self_consistency", "budget": 4, "max_tokens": None,
         "stop_when": "budget", "step_format": fmt, "id": "p", "gold": "7", "answer": a,
         "correct": a == "7", "tokens": 40, "seconds": 1.0, "error": None,
         "tree": {"ends": [[a, 1, 10]] * 4}}
        for fmt, a in (("code", "7"), ("text", "2"))
    ]  # fmt: skip
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert sr.main([str(path), "--rules", "confident:0.95"]) == 0
    shown = capsys.readouterr().out
    assert "self_consistency@4: 1 problems (the run's own accuracy 100.0%)" in shown
    assert "self_consistency/text@4: 1 problems (the run's own accuracy 0.0%)" in shown
    assert shown.count(" 4.00 chains") == 4  # both rules in both runs: four chains, not eight


def test_chains_are_replayed_in_a_seeded_random_order_not_shortest_first():
    # a run spent in full records its chains as they ended: here four short wrong ones first
    ends = [["2", 1, 10]] * 4 + [["7", 3, 30]] * 12
    records = [
        {"algorithm": "self_consistency", "budget": 16, "max_tokens": None,
         "stop_when": "budget", "step_format": "code", "id": f"p{i}", "gold": "7", "answer": "7",
         "correct": True, "tokens": 400, "seconds": 1.0, "error": None, "tree": {"ends": ends}}
        for i in range(20)
    ]  # fmt: skip
    in_order = sr.compare(records, ["confident:0.95"], seed=None)["confident:0.95"]
    assert in_order["accuracy"] == 0.0  # settles on the four short chains every time
    drawn = sr.compare(records, ["confident:0.95"])["confident:0.95"]
    assert drawn["accuracy"] >= 0.9  # four wrong chains drawn first: 1 in 1,820
    assert sr.compare(records, ["confident:0.95"]) == sr.compare(records, ["confident:0.95"])
    assert sorted(sr.drawn(records[0], seed=3)) == sorted(map(tuple, ends))


def test_over_many_orders_a_problem_counts_its_share_right():
    # an 8-8 split: the full budget's vote ties and goes to whichever answer came first
    split = {"algorithm": "self_consistency", "budget": 16, "max_tokens": None,
             "stop_when": "budget", "step_format": "code", "id": "p", "gold": "7", "answer": "7",
             "correct": True, "tokens": 160, "seconds": 1.0, "error": None,
             "tree": {"ends": [["2", 1, 10]] * 8 + [["7", 1, 10]] * 8}}  # fmt: skip
    table = sr.compare([split], ["unbeatable"], orders=40)
    share = table["budget"]["accuracy"]
    assert 0 < share < 1 and round(share * 40, 6) == round(share * 40)
    assert table["budget"]["mean_chains"] == 16 and table["unbeatable"]["net_lost"] == 0
