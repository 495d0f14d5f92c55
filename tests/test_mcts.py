"""MCTS against a scripted policy: selection, backup, terminal rules, budgets, batching."""

import json
import math

import pytest

from search import Budget, Components, SearchConfig, SearchResult, run_search
from search.mcts import mcts, select_child
from search.tree import Node, Tree, uct
from tests.support.scripted import ScriptedPolicy, ScriptedReward, endless

S1A = "# Step 1: boxes\na = 3 * 12"
S1B = "# Step 1: wrong count\na = 3 * 13"
S2A = "# Step 2: print\nprint(a - 7)"
S2B = "# Step 2: print\nprint(a - 7)"


def two_branch_script():
    """Root: a right and a wrong first step; each continues to a final step."""
    return {
        (): [S1A + "\n<end_of_step>", S1B + "\n<end_of_step>"],
        (S1A,): [S2A + "\n<end_of_code>"],
        (S1B,): [S2B + "\n<end_of_code>"],
    }


@pytest.fixture
def comps(sandbox):
    """Components on the real nsjail sandbox (session-wide pool)."""
    return lambda policy, reward=None: Components(policy, sandbox, reward)


# --- selection -------------------------------------------------------------------------------


def make_parent_with(children_stats):
    tree = Tree("p")
    root = tree.root
    root.status, root.visits = "expanded", sum(v for v, _ in children_stats)
    kids = [tree.add(root, visits=v, value_sum=w) for v, w in children_stats]
    return tree, root, kids


def test_uct_formula():
    _, root, (a, b) = make_parent_with([(5, 4.0), (1, 0.0)])
    assert uct(a, root, 2.0, 1.0) == pytest.approx(0.8 + 2 * math.sqrt(math.log(6) / 5))
    assert uct(b, root, 2.0, 1.0) == pytest.approx(0.0 + 2 * math.sqrt(math.log(6) / 1))
    assert uct(Node(9, 0, 1), root, 2.0, 1.0) == math.inf


def test_selection_prefers_exploration_then_value():
    _, root, (a, b) = make_parent_with([(5, 4.0), (1, 0.0)])
    assert select_child(root, [a, b], c=2.0, virtual_loss=1.0) is b  # rarely visited wins
    assert select_child(root, [a, b], c=0.0, virtual_loss=1.0) is a  # pure exploitation


def test_unvisited_children_first_ordered_by_prm_score():
    _, root, (a, b, c) = make_parent_with([(3, 3.0), (0, 0.0), (0, 0.0)])
    b.prm_score, c.prm_score = 0.1, 0.7
    assert select_child(root, [a, b, c], 2.0, 1.0) is c


def test_virtual_loss_steers_concurrent_rollouts_apart():
    _, root, (a, b) = make_parent_with([(0, 0.0), (0, 0.0)])
    first = select_child(root, [a, b], 2.0, 1.0)
    first.virtual += 1
    assert select_child(root, [a, b], 2.0, 1.0) is not first


def test_terminal_children_are_never_selected_even_unvisited():
    _, root, (a, b) = make_parent_with([(3, -2.0), (0, 0.0)])
    b.status, b.prm_score = "terminal", 0.99
    assert select_child(root, [a, b], 2.0, 1.0) is a
    a.exhausted = True
    assert select_child(root, [a, b], 2.0, 1.0) is None


def test_exhausted_and_invalid_children_are_never_selected():
    _, root, (a, b) = make_parent_with([(1, 1.0), (0, 0.0)])
    a.exhausted = True
    b.status, b.exhausted = "invalid", True
    assert select_child(root, [a, b], 2.0, 1.0) is None


async def test_first_rollouts_visit_every_root_child_before_going_deeper(comps):
    policy = ScriptedPolicy(default=endless)
    r = await mcts(
        "p",
        comps(policy),
        Budget(rollouts=3),
        SearchConfig(candidates=3, parallel_rollouts=1, max_depth=2),
    )
    root_children = r.tree.children(r.tree.root)
    # depth-2 steps are "too deep" here, so each rollout ends after expanding one root child;
    # UCT (unvisited = infinite) sends the three rollouts to three different children
    assert [c.status for c in root_children] == ["expanded"] * 3


# --- backup and terminal rules ---------------------------------------------------------------


async def test_every_terminal_is_backed_up_when_it_is_made(comps):
    """A final step next to an open one counts on the path at once: the rollout that made it
    goes on into the open step, and the answer still reaches the root's Q."""
    script = {
        (): [S1A + "\n<end_of_step>"],
        (S1A,): ["# Step 2: done\nprint(a)\n<end_of_code>", S2A + "\n<end_of_step>"],
        (S1A, S2A): ["print(a + 1)\n<end_of_code>"],
    }
    r = await mcts(
        "p",
        comps(ScriptedPolicy(script)),
        Budget(rollouts=1),
        SearchConfig(candidates=2, parallel_rollouts=1),
        gold="36",
    )
    t = r.tree
    (s1,) = t.children(t.root)
    done, s2 = t.children(s1)
    assert done.status == "terminal" and done.correct and done.visits == 1
    (late,) = t.children(s2)
    assert late.status == "terminal" and late.correct is False
    # both outcomes back up to the root; the rollout walked only into the open step
    assert (t.root.visits, t.root.value_sum) == (2, 0.0)
    assert (s1.visits, s1.value_sum) == (2, 0.0) and (s2.visits, s2.value_sum) == (1, -1.0)
    assert r.usage.rollouts == 1 and all(n.virtual == 0 for n in t)


async def test_one_rollout_in_flight_expands_one_node_a_wave(comps):
    """With one rollout in flight, each wave is one expansion, and the second rollout starts
    after the first's outcome is backed up (it goes to the branch not yet found wrong)."""
    script = {
        (): [S1B + "\n<end_of_step>", S1A + "\n<end_of_step>"],
        (S1B,): ["# Step 2: wrong\nprint(a)\n<end_of_code>"],
        (S1A,): ["# Step 2: right\nprint(a - 7)\n<end_of_code>"],
    }
    policy = ScriptedPolicy(script)
    r = await mcts(
        "p",
        comps(policy),
        Budget(rollouts=2),
        SearchConfig(candidates=2, parallel_rollouts=1, c_uct=0.5),
        gold="29",
    )
    wrong, right = r.tree.children(r.tree.root)
    assert wrong.status == right.status == "expanded"
    assert policy.step_batches == [1, 1, 1]  # one node a wave: each rollout after the last


async def test_backup_with_gold_answer(grader, comps):
    policy = ScriptedPolicy(two_branch_script())
    r = await mcts("p", comps(policy), Budget(rollouts=8), SearchConfig(candidates=2), gold="29")
    t = r.tree
    right, wrong = t.children(t.root)
    (right_end,), (wrong_end,) = t.children(right), t.children(wrong)
    assert right_end.answer == "29" and right_end.correct and right_end.reward == 1.0
    assert wrong_end.answer == "32" and wrong_end.correct is False and wrong_end.reward == -1.0
    assert (right.visits, right.value_sum) == (1, 1.0)
    assert (wrong.visits, wrong.value_sum) == (1, -1.0)
    assert (t.root.visits, t.root.value_sum) == (2, 0.0)
    assert r.answer == "29" and r.correct is True and r.reward_source == "gold"
    assert r.stopped_by == "exhausted"  # both branches finished before 8 rollouts
    assert all(n.virtual == 0 for n in t)


async def test_invalid_steps_count_minus_one_on_themselves_only(comps):
    script = {
        (): [S1A + "\n<end_of_step>", "# Step 1: boom\na = 1 / 0\n<end_of_step>", "no stop"],
        (S1A,): [S2A + "\n<end_of_code>"],
    }
    r = await mcts(
        "p", comps(ScriptedPolicy(script)), Budget(rollouts=4), SearchConfig(candidates=3)
    )
    t = r.tree
    good, boom, garbage = t.children(t.root)
    assert boom.status == "invalid" and boom.error.startswith("runtime: ZeroDivisionError")
    assert garbage.status == "invalid" and garbage.error.startswith("malformed")
    for bad in (boom, garbage):
        assert (bad.visits, bad.value_sum, bad.children) == (1, -1.0, [])
    # the root saw only the good rollout: invalid steps are not backed up
    assert t.root.visits == 1 and t.root.value_sum == good.value_sum
    assert r.answer == "29"


async def test_too_deep_is_an_invalid_terminal(comps):
    r = await mcts(
        "p",
        comps(ScriptedPolicy(default=endless)),
        Budget(rollouts=5),
        SearchConfig(candidates=2, max_depth=3),
    )
    deep = [n for n in r.tree if n.depth == 3]
    assert deep and all(n.status == "invalid" and n.error.startswith("too deep") for n in deep)
    assert max(n.depth for n in r.tree) == 3
    assert r.answer is None and r.steps == []


async def test_unboxed_answer_falls_back_to_what_the_code_printed(comps):
    policy = ScriptedPolicy(two_branch_script(), answer=lambda prompt: "I think so.<end_of_answer>")
    r = await mcts("p", comps(policy), Budget(rollouts=4), SearchConfig(candidates=2))
    assert sorted(n.answer for n in r.tree.terminals()) == ["29", "32"]
    assert all(n.answer_text == "I think so." for n in r.tree.terminals())


async def test_final_step_with_no_boxed_answer_and_no_output_is_invalid(comps):
    script = {
        (): [S1A + "\n<end_of_step>"],
        (S1A,): ["# Step 2: forgot to print\nb = a - 7\n<end_of_code>"],
    }
    policy = ScriptedPolicy(script, answer=lambda prompt: "I think so.<end_of_answer>")
    r = await mcts("p", comps(policy), Budget(rollouts=4), SearchConfig(candidates=1))
    finals = [n for n in r.tree if n.final]
    assert finals and all(n.status == "invalid" and n.error.startswith("no answer") for n in finals)
    assert r.answer is None


async def test_reward_model_scores_steps_and_terminals(comps):
    reward = ScriptedReward({"wrong count": -0.5, "boxes": 0.6, "print(a - 7)": 0.3})
    policy = ScriptedPolicy(two_branch_script())
    r = await mcts("p", comps(policy, reward), Budget(rollouts=4), SearchConfig(candidates=2))
    t = r.tree
    right, wrong = t.children(t.root)
    assert (right.prm_score, wrong.prm_score) == (0.6, -0.5)
    end = t.children(right)[0]
    assert end.reward == end.prm_score == 0.3  # terminal reward = reward model's score
    assert r.reward_source == "reward_model" and r.score == 0.3
    # PPM-augmented init: one visit worth its score, then the backed-up terminal value
    assert right.visits == 2 and right.value_sum == pytest.approx(0.6 + 0.3)
    assert reward.calls and all(n >= 1 for n in reward.calls)


async def test_rollouts_follow_the_reward_model_first(comps):
    reward = ScriptedReward({"option 2": 0.9}, default=-0.2)
    policy = ScriptedPolicy(default=endless)
    r = await mcts(
        "p",
        comps(policy, reward),
        Budget(rollouts=2),
        SearchConfig(candidates=3, parallel_rollouts=1, max_depth=4),
    )
    first_expanded = r.tree.nodes[1:4]
    assert [n.status for n in first_expanded] == ["open", "open", "expanded"]


async def test_agreement_reward_without_reward_model_or_gold(comps):
    script = {
        (): [f"# Step 1: way {i}\nx = {v}\n<end_of_step>" for i, v in enumerate([6, 6, 7, 6])],
        **{
            (f"# Step 1: way {i}\nx = {v}",): ["print(x)\n<end_of_code>"]
            for i, v in enumerate([6, 6, 7, 6])
        },
    }
    r = await mcts(
        "p",
        comps(ScriptedPolicy(script)),
        Budget(rollouts=8),
        SearchConfig(candidates=4, parallel_rollouts=1),
    )
    assert r.reward_source == "agreement"
    assert r.answer == "6"
    assert r.score == pytest.approx(2 * 3 / 4 - 1)  # final agreement: 3 of 4 terminals say 6
    assert [(a.answer, a.count) for a in r.alternatives] == [("6", 3), ("7", 1)]
    terminals = r.tree.terminals()
    assert terminals[0].reward == 1.0  # the first terminal agrees with itself alone


# --- budgets ---------------------------------------------------------------------------------


async def test_rollout_budget(comps):
    policy = ScriptedPolicy(default=endless)
    r = await mcts(
        "p",
        comps(policy),
        Budget(rollouts=5),
        SearchConfig(candidates=2, parallel_rollouts=2, max_depth=6),
    )
    assert r.stopped_by == "rollouts" and r.usage.rollouts == 5


def wrong_finals(path):
    """Two ways on and a wrong final answer (100 + depth) below every step."""
    k = len(path) + 1
    go_on = [f"# Step {k}: go on {i}\nv{k}_{i} = {i}\n<end_of_step>" for i in range(2)]
    return [*go_on, f"# Step {k}: done\nprint({100 + k})\n<end_of_code>"]


@pytest.mark.parametrize(
    ("gold", "unsolved", "rollouts"),
    [
        ("7", 7, 7),  # never solved: the budget grows to 7
        ("7", None, 3),  # no extension asked for
        (None, 7, 3),  # no gold: nothing says it is unsolved
        ("101", 7, 3),  # solved within the budget: no extension
    ],
)
async def test_unsolved_problems_get_more_rollouts(comps, gold, unsolved, rollouts):
    policy = ScriptedPolicy(default=wrong_finals)
    seen = []
    c = comps(policy)
    c.progress = seen.append
    config = SearchConfig(
        candidates=3, parallel_rollouts=1, max_depth=4, unsolved_rollouts=unsolved
    )
    r = await mcts("p", c, Budget(rollouts=3), config, gold=gold)
    assert r.usage.rollouts == rollouts and r.stopped_by == "rollouts"
    assert seen[-1].rollouts_budget == rollouts
    if gold == "101":
        assert any(n.correct for n in r.tree.terminals())


async def test_token_budget(comps):
    policy = ScriptedPolicy(default=endless)
    r = await mcts(
        "p",
        comps(policy),
        Budget(rollouts=1000, max_tokens=60),
        SearchConfig(candidates=3, parallel_rollouts=2, max_depth=12),
    )
    assert r.stopped_by == "max_tokens"
    # the steps all cost the same: a wave takes only the expansions the budget still covers
    per_expansion = max(policy.call_tokens) / 2
    assert 60 - per_expansion < r.usage.tokens <= 60
    assert r.usage.tokens == sum(n.tokens for n in r.tree)


async def test_time_budget_cancels_a_slow_call(comps):
    """A call still in flight at the time limit is cancelled, not waited for: the policy's one
    call takes a minute, the search ends at its one-second limit."""
    policy = ScriptedPolicy(default=endless, delay_s=60)
    r = await mcts(
        "p",
        comps(policy),
        Budget(rollouts=1000, time_limit_s=1.0),
        SearchConfig(candidates=2, max_depth=30),
    )
    assert r.stopped_by == "time_limit_s"
    assert len(policy.calls) == 1 and policy.cancelled == 1  # the slow call, cut off
    assert r.usage.elapsed_s >= 1.0  # not before its limit
    assert r.usage.elapsed_s < 30  # generous on a busy machine; the call alone takes 60 s
    assert all(n.virtual == 0 for n in r.tree)


async def test_usage_accounts_every_call(sandbox):
    policy = ScriptedPolicy(two_branch_script())
    reward = ScriptedReward()
    runs_before = sandbox.stats.runs
    r = await mcts(
        "p", Components(policy, sandbox, reward), Budget(rollouts=4), SearchConfig(candidates=2)
    )
    u = r.usage
    assert u.policy_calls == len(policy.calls)
    assert u.sandbox_runs == sandbox.stats.runs - runs_before > 0
    assert u.reward_calls == len(reward.calls)
    assert u.nodes == len(r.tree) - 1
    assert u.elapsed_s > 0


# --- de-duplication and batching -------------------------------------------------------------


async def test_duplicate_candidates_are_removed(comps):
    script = {
        (): [
            S1A + "\n<end_of_step>",
            "  " + S1A.replace("\n", "\n ") + "  \n<end_of_step>",
            S1A + "\n<end_of_step>",
            S1B + "\n<end_of_step>",
        ],
        (S1A,): [S2A + "\n<end_of_code>"],
        (S1B,): [S2B + "\n<end_of_code>"],
    }
    r = await mcts(
        "p", comps(ScriptedPolicy(script)), Budget(rollouts=4), SearchConfig(candidates=4)
    )
    root_kids = r.tree.children(r.tree.root)
    assert len(root_kids) == 2
    assert r.usage.duplicates >= 2


def one_step_answers(*values):
    """Root: one-step solutions printing each value (every child is a terminal)."""
    return {(): [f"# Step 1: answer\nprint({v})\n<end_of_code>" for v in values]}


async def test_a_node_with_only_outcomes_below_closes_without_widening(comps):
    policy = ScriptedPolicy(one_step_answers(1, 2, 3, 4, 5, 6))
    config = SearchConfig(candidates=2, parallel_rollouts=1)
    r = await mcts("p", comps(policy), Budget(rollouts=8), config)
    assert len(r.tree.children(r.tree.root)) == 2 and r.tree.root.expansions == 1
    assert r.stopped_by == "exhausted" and r.usage.rollouts == 1


async def test_progressive_widening_samples_a_closed_node_again(comps):
    policy = ScriptedPolicy(one_step_answers(1, 2, 3, 4, 5, 6))
    config = SearchConfig(candidates=2, max_expansions=3, parallel_rollouts=1)
    r = await mcts("p", comps(policy), Budget(rollouts=8), config)
    root = r.tree.root
    assert root.expansions == 3 and root.exhausted
    assert r.usage.rollouts == 3  # each later rollout widens the root once
    assert sorted(n.answer for n in r.tree.children(root)) == ["1", "2", "3", "4", "5", "6"]
    assert root.visits == 6  # every new outcome backed up as it was made
    assert r.stopped_by == "exhausted"


async def test_widening_stops_at_the_budget_and_lower_nodes_widen_too(comps):
    script = {
        (): [S1A + "\n<end_of_step>"],
        (S1A,): [f"# Step 2: answer\nprint(a - {k})\n<end_of_code>" for k in range(8)],
    }
    config = SearchConfig(candidates=2, max_expansions=4, parallel_rollouts=1)
    r = await mcts("p", comps(ScriptedPolicy(script)), Budget(rollouts=3), config)
    t = r.tree
    (step1,) = t.children(t.root)
    assert step1.expansions == 3 and len(t.children(step1)) == 6 and not step1.exhausted
    assert r.usage.rollouts == 3 and r.stopped_by == "rollouts"


async def test_parallel_rollouts_reach_the_policy_as_batches(comps):
    policy = ScriptedPolicy(default=endless)
    await mcts(
        "p",
        comps(policy),
        Budget(rollouts=8),
        SearchConfig(candidates=3, parallel_rollouts=4, max_depth=4),
    )
    batches = policy.step_batches
    assert batches[0] == 1  # the root
    assert batches[1] == 3  # four rollouts spread over the root's three children
    assert max(batches) >= 3

    serial = ScriptedPolicy(default=endless)
    await mcts(
        "p",
        comps(serial),
        Budget(rollouts=8),
        SearchConfig(candidates=3, parallel_rollouts=1, max_depth=4),
    )
    assert set(serial.step_batches) == {1}


async def test_candidates_are_requested_as_n_samples(comps):
    policy = ScriptedPolicy(default=endless)
    await mcts("p", comps(policy), Budget(rollouts=2), SearchConfig(candidates=5))
    assert policy.calls[0][0].n == 5


# --- final answer ----------------------------------------------------------------------------


def voting_script():
    """Five terminals: one answer 7 with a high score, four answers 6 with middling scores."""
    vals = [7, 6, 6, 6, 6]
    return {
        (): [f"# Step 1: way {i}\nx = {v}\n<end_of_step>" for i, v in enumerate(vals)],
        **{
            (f"# Step 1: way {i}\nx = {v}",): [f"# final {v}\nprint(x)\n<end_of_code>"]
            for i, v in enumerate(vals)
        },
    }


async def test_final_answer_is_the_highest_scored_terminal(comps):
    reward = ScriptedReward({"final 7": 0.9, "final 6": 0.4})
    r = await mcts(
        "p",
        comps(ScriptedPolicy(voting_script()), reward),
        Budget(rollouts=10),
        SearchConfig(candidates=5, final_choice="best"),
    )
    assert r.answer == "7" and r.score == 0.9


async def test_the_default_answer_is_a_score_weighted_vote_over_all_terminals(comps):
    reward = ScriptedReward({"final 7": 0.9, "final 6": 0.4})
    r = await mcts(
        "p",
        comps(ScriptedPolicy(voting_script()), reward),
        Budget(rollouts=10),
        SearchConfig(candidates=5),
    )
    assert r.answer == "6"  # 4 × 0.7 outweighs 1 × 0.95


async def test_score_weighted_vote_over_top_k(comps):
    reward = ScriptedReward({"final 7": 0.9, "final 6": 0.4})
    r = await mcts(
        "p",
        comps(ScriptedPolicy(voting_script()), reward),
        Budget(rollouts=10),
        SearchConfig(candidates=5, vote_top_k=5),
    )
    assert r.answer == "6"  # 4 × 0.7 outweighs 1 × 0.95
    top2 = await mcts(
        "p",
        comps(ScriptedPolicy(voting_script()), reward),
        Budget(rollouts=10),
        SearchConfig(candidates=5, vote_top_k=2),
    )
    assert top2.answer == "7"  # top-2 = one 7 (0.95) and one 6 (0.7)
    assert r.alternatives[0].answer == "6" and r.alternatives[0].count == 4


async def test_winning_trajectory_is_reported_step_by_step(comps):
    r = await mcts(
        "p",
        comps(ScriptedPolicy(two_branch_script())),
        Budget(rollouts=4),
        SearchConfig(candidates=2),
        gold="29",
    )
    assert [s.code for s in r.steps] == ["a = 3 * 12", "print(a - 7)"]
    assert r.steps[0].reasoning == "Step 1: boxes"
    assert r.steps[-1].output == "29"
    assert r.answer_text == "The answer is \\boxed{29}."


# --- malformed output and serialisation ------------------------------------------------------


async def test_garbage_policy_ends_cleanly_without_an_answer(comps):
    garbage = ["", "<output>", "\x00\xff", "print(1)", "# Step\n<answer>\\boxed{3}<end_of_answer>"]
    policy = ScriptedPolicy(default=lambda path: garbage)
    r = await mcts("p", comps(policy), Budget(rollouts=10), SearchConfig(candidates=5))
    assert r.answer is None and r.stopped_by == "exhausted"
    assert all(n.status == "invalid" for n in r.tree.nodes[1:])


async def test_tree_and_result_round_trip_through_json(comps):
    r = await mcts(
        "p",
        comps(ScriptedPolicy(two_branch_script()), ScriptedReward({"boxes": 0.5})),
        Budget(rollouts=4),
        SearchConfig(candidates=2),
        gold="29",
    )
    text = r.tree.to_json()
    assert json.loads(text)["nodes"][0]["parent"] is None
    assert Tree.from_json(text) == r.tree
    again = SearchResult.model_validate_json(r.model_dump_json())
    assert again == r
    node = again.tree.nodes[1]
    assert {"text", "code", "output", "visits", "value_sum", "prm_score"} <= set(
        json.loads(text)["nodes"][1]
    )
    assert node.q == r.tree.nodes[1].q


async def test_unknown_algorithm_is_a_clear_error(comps):
    with pytest.raises(ValueError, match="unknown algorithm 'beam'"):
        await run_search("beam", "p", comps(ScriptedPolicy()))


async def test_progress_with_the_tree_streams_each_waves_new_and_changed_nodes(sandbox):
    """Upserting every event's nodes by id rebuilds the final tree; a wave sends only what it
    added or changed."""
    events = []
    c = Components(
        ScriptedPolicy(two_branch_script()),
        sandbox,
        ScriptedReward(),
        progress=events.append,
        progress_tree=True,
    )
    r = await run_search("mcts", "p", c, Budget(rollouts=4), SearchConfig(candidates=2))
    seen: dict[int, dict] = {}
    for e in events:
        assert e.tree_nodes is not None
        for n in e.tree_nodes:
            seen[n["id"]] = n
    final = {n["id"]: n for n in r.tree.to_dict()["nodes"]}
    assert seen.keys() == final.keys()
    strip = lambda n: {k: v for k, v in n.items() if k != "virtual"}  # noqa: E731
    assert [strip(seen[i]) for i in final] == [strip(n) for n in final.values()]
    assert sum(len(e.tree_nodes) for e in events) < len(events) * len(final)  # deltas, not copies
    quiet = []
    c2 = Components(ScriptedPolicy(two_branch_script()), sandbox, progress=quiet.append)
    await run_search("mcts", "p", c2, Budget(rollouts=2), SearchConfig(candidates=2))
    assert quiet and all(e.tree_nodes is None for e in quiet)
