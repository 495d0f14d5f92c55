"""Training-data extraction from finished trees: SFT trajectories, preference pairs."""

import json

import pydantic
import pytest
from rapidfuzz.distance import Levenshtein

from search.extract import (
    ExtractStats,
    LabelRules,
    PreferencePair,
    SftExample,
    Trajectory,
    extract,
    final_answer_pairs,
    merge_stats,
    preference_pairs,
    render_sft,
    sft_trajectories,
    supported,
)
from search.protocols import ScoreRequest
from search.steps import ANSWER_END, CODE_END, OUTPUT, render_output, render_prompt, render_step
from search.tree import Node, Tree


def step(tree: Tree, parent: Node, name: str, q: float, visits: int = 4, **kw) -> Node:
    """A valid intermediate step with Q = q."""
    return tree.add(
        parent,
        status=kw.pop("status", "expanded"),
        text=render_step(f"# {name}\n{name} = 1", False),
        reasoning=name,
        code=f"{name} = 1",
        visits=visits,
        value_sum=q * visits,
        **kw,
    )


def final(tree: Tree, parent: Node, name: str, q: float, correct: bool, visits: int = 2) -> Node:
    answer = "7" if correct else "8"
    text = (
        render_step(f"# {name}\nprint({answer})", True)
        + render_output(answer)
        + f"The answer is \\boxed{{{answer}}}.{ANSWER_END}\n"
    )
    return tree.add(
        parent,
        status="terminal",
        final=True,
        text=text,
        reasoning=name,
        code=f"print({answer})",
        output=answer,
        answer=answer,
        answer_text=f"The answer is \\boxed{{{answer}}}.",
        correct=correct,
        reward=1.0 if correct else -1.0,
        visits=visits,
        value_sum=q * visits,
    )


def failed(tree: Tree, parent: Node, name: str) -> Node:
    return tree.add(
        parent,
        status="invalid",
        text=f"# {name}\nboom(\n",
        error="syntax: SyntaxError",
        exhausted=True,
        visits=1,
        value_sum=-1.0,
    )


def search_q(k: int = 2, **kw) -> LabelRules:
    """The rules the first rounds ran with: the search's own Q, every pair kept."""
    base = {
        "q": "search",
        "q_margin": None,
        "min_edit_chars": 0,
        "check_claims": False,
        "supported_only": False,
    }
    return LabelRules(top_k=k, **{**base, **kw})


@pytest.fixture
def tree() -> Tree:
    """root ─ a (Q .6) ─ a1 ✓ (Q 1) , a2 ✗ (Q -1), a3 failed
    ├ b (Q .2) ─ b1 ✓ (Q .8)
    ├ c (Q -.5) ─ c1 ✗ (Q -1)
    ├ d (Q -.9) ─ d1 ✗ (Q -.6)
    ├ e (Q 0, open: no terminal below)
    └ x failed
    """
    t = Tree("What is 3 + 4?")
    t.root.status = "expanded"
    a = step(t, t.root, "a", 0.6)
    final(t, a, "a1", 1.0, True)
    final(t, a, "a2", -1.0, False)
    failed(t, a, "a3")
    b = step(t, t.root, "b", 0.2)
    final(t, b, "b1", 0.8, True)
    c = step(t, t.root, "c", -0.5)
    final(t, c, "c1", -1.0, False)
    d = step(t, t.root, "d", -0.9)
    final(t, d, "d1", -0.6, False)
    step(t, t.root, "e", 0.0, visits=0, status="open")
    failed(t, t.root, "x")
    return t


def by_name(tree: Tree, name: str) -> Node:
    return next(n for n in tree if n.reasoning == name)


def test_sft_top2_by_mean_q(tree):
    trajs = sft_trajectories(tree, search_q(2))
    assert [t.steps[-1].reasoning for t in trajs] == ["a1", "b1"]  # mean Q .8 and .5
    assert trajs[0].mean_q == pytest.approx((0.6 + 1.0) / 2)
    assert trajs[1].mean_q == pytest.approx((0.2 + 0.8) / 2)
    assert all(t.correct and t.answer == "7" for t in trajs)
    assert trajs[0].step_texts() == [by_name(tree, "a").text, by_name(tree, "a1").text]
    assert len(sft_trajectories(tree, search_q(1))) == 1


def test_sft_ranking_beats_terminal_q_alone():
    """Mean over the whole path decides, not the terminal's Q."""
    t = Tree("p")
    a = step(t, t.root, "a", -0.8)
    final(t, a, "a1", 1.0, True)  # mean .1
    b = step(t, t.root, "b", 0.9)
    final(t, b, "b1", 0.5, True)  # mean .7
    c = step(t, t.root, "c", 0.1)
    final(t, c, "c1", 0.3, True)  # mean .2
    assert [x.steps[-1].reasoning for x in sft_trajectories(t, search_q(2))] == ["b1", "c1"]


def test_sft_ties_broken_by_discovery_order():
    t = Tree("p")
    for name in ("a", "b", "c"):
        final(t, t.root, name, 0.5, True)
    assert [x.steps[-1].reasoning for x in sft_trajectories(t, search_q(2))] == ["a", "b"]


def test_failed_steps_never_in_sft_data():
    """A path through an invalid node is excluded even if something below says correct."""
    t = Tree("p")
    bad = failed(t, t.root, "bad")
    bad.reasoning = "bad"
    # an inconsistent tree (a terminal under an invalid node) must still not leak through
    final(t, bad, "under_bad", 1.0, True)
    good = step(t, t.root, "g", -0.9)
    final(t, good, "g1", -0.9, True)
    trajs = sft_trajectories(t, search_q(2))
    assert [x.steps[-1].reasoning for x in trajs] == ["g1"]
    assert not any("boom" in s.text for x in trajs for s in x.steps)


def test_no_correct_terminal_no_sft(tree):
    for n in tree:
        if n.correct:
            n.correct = False
    assert sft_trajectories(tree) == []


def test_pairs_at_root_top2_positive_bottom2_negative(tree):
    pairs = preference_pairs(tree, search_q(2))
    at_root = [p for p in pairs if p.prefix == []]
    a, b, c, d = (by_name(tree, x).text for x in "abcd")
    # positives a, b (lead to a correct answer); negatives d, c (only wrong), lowest Q first;
    # e has no terminal below, x failed: neither is paired
    assert {(p.chosen, p.rejected) for p in at_root} == {(a, d), (a, c), (b, d), (b, c)}
    assert len(at_root) == 4
    assert all(p.kind == "step" and p.problem == tree.problem for p in at_root)
    qa = next(p for p in at_root if p.chosen == a and p.rejected == d)
    assert qa.chosen_q == pytest.approx(0.6) and qa.rejected_q == pytest.approx(-0.9)


def test_pairs_share_the_prefix_and_skip_failed_children(tree):
    pairs = preference_pairs(tree, search_q(2))
    under_a = [p for p in pairs if p.prefix]
    a = by_name(tree, "a")
    assert len(under_a) == 1
    (p,) = under_a
    assert p.prefix == [a.text]
    assert p.chosen == by_name(tree, "a1").text
    assert p.rejected == by_name(tree, "a2").text  # not the failed a3
    assert p.chosen_request().steps == (a.text, p.chosen)
    assert p.rejected_request().steps == (a.text, p.rejected)
    assert len(pairs) == 5


def test_negatives_are_the_lowest_q():
    t = Tree("p")
    final(t, t.root, "good", 0.9, True)
    for name, q in [("w1", -0.2), ("w2", -0.9), ("w3", -0.5), ("w4", 0.1)]:
        final(t, t.root, name, q, False)
    rejected = [p.rejected for p in preference_pairs(t, search_q(2))]
    assert rejected == [by_name(t, "w2").text, by_name(t, "w3").text]


def test_node_with_only_correct_children_gives_no_pair():
    t = Tree("p")
    a = step(t, t.root, "a", 0.5)
    final(t, a, "a1", 1.0, True)
    final(t, a, "a2", 0.8, True)
    b = step(t, t.root, "b", 0.4)  # both outcomes below b: a positive, never a negative
    final(t, b, "b1", 1.0, True)
    final(t, b, "b2", -1.0, False)
    pairs = preference_pairs(t, search_q(2))
    assert all(p.prefix == [b.text] for p in pairs)  # none at the root, none under a
    assert len(pairs) == 1


def test_final_answer_pairs_relax_the_shared_prefix(tree):
    pairs = final_answer_pairs(tree, search_q(2))
    # correct: a→a1 (mean .8), b→b1 (.5); wrong, lowest mean first: d→d1 (-.75), c→c1 (-.75)…
    assert len(pairs) == 4
    assert all(p.kind == "final" for p in pairs)
    a, a1 = by_name(tree, "a"), by_name(tree, "a1")
    p = pairs[0]
    assert p.prefix == [] and p.chosen == a.text + a1.text
    # the text the PPM reads is the whole trajectory either way
    full = render_prompt(tree.problem, [a.text, a1.text], "bare")
    assert render_prompt(p.problem, [*p.prefix, p.chosen], "bare") == full


def test_final_pairs_share_what_they_have_in_common():
    t = Tree("p")
    a = step(t, t.root, "a", 0.5)
    final(t, a, "a1", 1.0, True)
    final(t, a, "a2", -1.0, False)
    pairs = final_answer_pairs(t, search_q(2))
    assert len(pairs) == 1 and pairs[0].prefix == [a.text]
    # extract() keeps it once: it repeats the step pair
    ex = extract(t, search_q(2))
    assert ex.stats.step_pairs == 1 and ex.stats.final_pairs == 0 and len(ex.pairs) == 1


def test_extract_stats_and_json_round_trip(tree):
    ex = extract(tree, search_q(2), problem_id="p-1")
    s = ex.stats
    assert (s.problems, s.problems_solved, s.trajectories) == (1, 1, 2)
    assert s.step_pairs == 5 and s.final_pairs == 4 and s.pairs == 9
    assert s.steps_per_trajectory == {2: 2} and s.mean_steps_per_trajectory == 2.0
    assert all(t.problem_id == "p-1" for t in ex.trajectories)
    for rec in (*ex.trajectories, *ex.pairs):
        line = rec.to_json()
        assert "\n" not in line
        assert type(rec).model_validate_json(line) == rec
    again = ExtractStats.model_validate_json(s.model_dump_json())
    assert again == s
    total = merge_stats([s, s, extract(Tree("nothing")).stats])
    assert total.problems == 3 and total.problems_solved == 2 and total.pairs == 18
    assert total.steps_per_trajectory == {2: 4}
    assert json.loads(json.dumps(total.summary()))["mean_steps_per_trajectory"] == 2.0


def test_extract_survives_tree_json_round_trip(tree):
    again = Tree.from_json(tree.to_json())
    assert extract(again) == extract(tree)


def test_render_sft_masks_prompt_and_executor_output(tree):
    (traj, _) = sft_trajectories(tree, search_q(2))
    ex = render_sft(traj)
    assert ex.prompt == render_prompt(tree.problem, [], "bare")
    assert ex.prompt + ex.completion == render_prompt(tree.problem, traj.step_texts(), "bare")
    segs = ex.segments()
    assert "".join(t for t, _ in segs) == ex.prompt + ex.completion
    trained = "".join(t for t, on in segs if on)
    untrained = "".join(t for t, on in segs if not on)
    # the policy learns its steps, stop strings and the answer; not the prompt nor the output
    assert "# a\na = 1\n<end_of_step>\n" in trained
    assert CODE_END in trained and "\\boxed{7}" in trained and ANSWER_END in trained
    assert OUTPUT not in trained and "<answer>" not in trained
    assert untrained.startswith(ex.prompt) and "<output>\n7\n<end_of_output>\n<answer>" in untrained
    assert SftExample.model_validate_json(ex.to_json()) == ex


def test_stats_add_up_across_trees_under_the_keys_a_round_records():
    a = ExtractStats(
        problems=1,
        problems_solved=1,
        problems_with_pairs=1,
        trajectories=2,
        step_pairs=3,
        final_pairs=1,
        unsupported=1,
        steps_per_trajectory={2: 2},
    )
    b = ExtractStats(
        problems=2,
        problems_solved=1,
        trajectories=1,
        final_pairs=2,
        unsound=2,
        steps_per_trajectory={1: 1},
    )
    both = a.merge(b)
    assert both.steps_per_trajectory == {1: 1, 2: 2}
    assert both.summary() == {
        "problems": 3,
        "problems_solved": 2,
        "problems_with_pairs": 1,
        "trajectories": 3,
        "pairs": 6,
        "step_pairs": 3,
        "final_pairs": 3,
        "unsupported": 1,
        "unsound": 2,
        "mean_steps_per_trajectory": 1.667,  # (1 + 2 + 2) / 3
    }
    assert merge_stats([a, b]) == both


def test_a_pair_is_scored_as_the_problem_and_the_prefix_then_each_side():
    p = PreferencePair(
        problem="What is 3 + 4?",
        prefix=["# Step 1\n"],
        chosen="c",
        rejected="r",
        chosen_q=1,
        rejected_q=-1,
    )
    assert p.chosen_request() == ScoreRequest("What is 3 + 4?", ("# Step 1\n", "c"))
    assert p.rejected_request() == ScoreRequest("What is 3 + 4?", ("# Step 1\n", "r"))


def test_records_are_frozen():
    p = PreferencePair(problem="p", prefix=[], chosen="a", rejected="b", chosen_q=1, rejected_q=0)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        p.chosen = "c"
    assert p.chosen == "a"
    t = Trajectory(problem="p", steps=[])
    assert t.step_texts() == []


def test_supported_answers_are_the_ones_the_code_printed(tree):
    a1 = by_name(tree, "a1")
    assert supported(a1)
    for printed, ok in (("The total is 7", True), ("7.0", True), ("6", False), ("", False)):
        a1.output = printed
        assert supported(a1) is ok, printed


def test_unsupported_correct_answers_are_neither_sft_data_nor_positives(tree):
    by_name(tree, "a1").output = "6"  # printed 6, answered 7: right by luck
    loose, strict = extract(tree, search_q(2)), extract(tree, search_q(2, supported_only=True))
    assert loose.stats.unsupported == strict.stats.unsupported == 1
    assert [t.steps[-1].reasoning for t in loose.trajectories] == ["a1", "b1"]
    assert [t.steps[-1].reasoning for t in strict.trajectories] == ["b1"]
    # below a only a wrong answer is credited now: at the root b is the one positive
    root_pairs = [p for p in strict.pairs if p.kind == "step" and not p.prefix[1:]]
    assert {p.chosen for p in root_pairs} == {by_name(tree, "b").text}
    assert all("a1" not in p.chosen for p in strict.pairs)


# --- the reference's label rules (the default) -----------------------------------------------


def test_labels_read_q_from_every_terminal_below_visited_or_not(tree):
    """Outcome Q: a (one right, one wrong below) 0; b (right) 1; c, d (wrong) -1, whatever
    the search's visits say; pairs rank by it."""
    for n in tree.terminals():
        n.visits, n.value_sum = 0, 0.0  # made, never walked to
    rules = LabelRules(min_edit_chars=0)
    (best, second) = sft_trajectories(tree, rules)
    assert [s.q for s in best.steps] == [1.0, 1.0] and best.steps[0].reasoning == "b"
    assert second.steps[0].q == 0.0
    root_pairs = [p for p in preference_pairs(tree, rules) if not p.prefix]
    assert [(p.chosen_q, p.rejected_q) for p in root_pairs] == [(1, -1), (1, -1), (0, -1), (0, -1)]


def test_pairs_need_a_q_margin_and_different_enough_steps():
    t = Tree("What is 3 + 4?")
    t.root.status = "expanded"
    weak = step(t, t.root, "weak", 0.0)  # one right below, four wrong: outcome Q -0.6
    final(t, weak, "w1", 0, True)
    for i in range(4):
        final(t, weak, f"w{i + 2}", 0, False)
    bad = step(t, t.root, "bad_step_with_another_long_name", 0.0)
    final(t, bad, "b1", 0, False)
    root_pairs = lambda rules: [p for p in preference_pairs(t, rules) if not p.prefix]  # noqa: E731
    assert root_pairs(LabelRules(min_edit_chars=0)) == []  # -0.6 vs -1: under the 0.5 margin
    assert len(root_pairs(LabelRules(min_edit_chars=0, q_margin=0.4))) == 1
    assert len(root_pairs(LabelRules(q_margin=0.4, min_edit_chars=20))) == 1  # 30+ chars apart
    assert root_pairs(LabelRules(q_margin=0.4, min_edit_chars=60)) == []
    (pair,) = root_pairs(LabelRules(q_margin=0.4, min_edit_chars=0))
    apart = Levenshtein.distance(pair.chosen, pair.rejected)
    assert len(root_pairs(LabelRules(q_margin=0.4, min_edit_chars=apart))) == 1  # just enough
    assert root_pairs(LabelRules(q_margin=0.4, min_edit_chars=apart + 1)) == []


def test_a_right_answer_under_false_arithmetic_is_not_credited(tree):
    a1 = by_name(tree, "a1")
    a1.reasoning = "3 + 4 = 8, so print 7"
    rules = LabelRules(min_edit_chars=0)
    assert [t.steps[0].reasoning for t in sft_trajectories(tree, rules)] == ["b"]
    ex = extract(tree, rules)
    assert ex.stats.unsound == 1
    # a now leads only to a wrong answer (a1 is neither): a negative at the root
    assert any(p.rejected == by_name(tree, "a").text for p in ex.pairs)
    assert not extract(tree, LabelRules(min_edit_chars=0, check_claims=False)).stats.unsound
