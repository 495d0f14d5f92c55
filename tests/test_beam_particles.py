"""Step-level beam search and particle filtering against a scripted policy and reward model:
which beams survive, how particles resample, budgets, and the same interfaces as the rest."""

import random

import pytest

from search import ALGORITHMS, Budget, Components, SearchConfig, run_search
from search.particles import resample
from search.tree import Node
from tests.support.scripted import ScriptedPolicy, ScriptedReward

GOOD, OK, BAD = "# Step 1: good\na = 6", "# Step 1: ok\na = 5", "# Step 1: bad\na = 4"
A, B = "# Step 1: keep\nx = 2", "# Step 1: drop\nx = 3"


def final(tag: str, expr: str) -> str:
    return f"# Step 2: {tag}\nprint({expr})\n<end_of_code>"


def beam_script():
    return {
        (): [GOOD + "\n<end_of_step>", OK + "\n<end_of_step>", BAD + "\n<end_of_step>"],
        (GOOD,): [final("g1", "a * 5"), final("g2", "a * 5 + 0"), final("g3", "a * 4 + 6")],
        (OK,): [final("o1", "a * 6"), final("o2", "a + 25"), final("o3", "a * 7")],
        (BAD,): [final("b1", "a")],
    }


REWARD = ScriptedReward({"good": 0.9, "ok": 0.5, "bad": -0.5, "g1": 0.8, "o3": 0.1}, default=0.0)


def children(tree, node):
    return [tree.nodes[i] for i in node.children]


async def test_beam_search_keeps_the_best_scored_beams_and_extends_only_them(sandbox):
    policy = ScriptedPolicy(beam_script())
    c = Components(policy, sandbox, REWARD)
    r = await run_search("beam_search", "p", c, Budget(rollouts=6), SearchConfig(candidates=3))
    tree = r.tree
    assert len(children(tree, tree.root)) == 3
    by_code = {n.code: n for n in children(tree, tree.root)}
    good, ok, bad = by_code["a = 6"], by_code["a = 5"], by_code["a = 4"]
    # width = 6 // 3 = 2: the two best-scored first steps survive, the third is never extended
    assert len(good.children) == 3 and len(ok.children) == 3 and bad.children == []
    assert bad.exhausted
    assert policy.step_batches == [1, 2]  # the root, then both beams in one batched call
    assert r.usage.rollouts == 6 and r.stopped_by == "finished"
    assert r.answer == "30" and r.algorithm == "beam_search"
    assert [s.code for s in r.steps] == ["a = 6", "print(a * 5)"]  # the best-scored terminal


async def test_beam_search_without_a_reward_model_answers_by_agreement(sandbox):
    c = Components(ScriptedPolicy(beam_script()), sandbox)
    r = await run_search("beam_search", "p", c, Budget(rollouts=6), SearchConfig(candidates=3))
    assert r.reward_source == "agreement"
    assert r.answer == "30"  # 30 is reached by the most finished beams (g1, g2, o1, o2)


async def test_beam_search_honours_the_rollout_budget(sandbox):
    c = Components(ScriptedPolicy(beam_script()), sandbox, REWARD)
    r = await run_search("beam_search", "p", c, Budget(rollouts=3), SearchConfig(candidates=3))
    # width 1: only the best first step is extended, and its 3 terminals end the search
    assert r.usage.rollouts == 3 and len(r.tree.terminals()) == 3
    assert {t.code for t in r.tree.terminals()} == {
        "print(a * 5)",
        "print(a * 5 + 0)",
        "print(a * 4 + 6)",
    }


def particle_script():
    return {
        (): [A + "\n<end_of_step>", B + "\n<end_of_step>"],
        (A,): [final("ka", "x * 21")],
        (B,): [final("kb", "x * 10")],
    }


async def test_particles_resample_towards_high_scores_and_low_ones_die_out(sandbox):
    reward = ScriptedReward({"keep": 1.0, "drop": -1.0, "ka": 0.5, "kb": 0.5})
    c = Components(ScriptedPolicy(particle_script()), sandbox, reward)
    config = SearchConfig(seed=7, particle_temperature=0.05)
    r = await run_search("particle_filtering", "p", c, Budget(rollouts=4), config)
    tree = r.tree
    firsts = children(tree, tree.root)
    assert len(firsts) == 4  # four particles, each sampled one first step
    kept = [n for n in firsts if n.code == "x = 2"]
    dropped = [n for n in firsts if n.code == "x = 3"]
    assert kept and dropped
    # at temperature 0.05 a score gap of 2 is a weight ratio of e^-40: every resampled particle
    # is a copy of a kept one, so no dropped particle is ever extended
    assert all(n.children == [] for n in dropped)
    assert sum(len(n.children) for n in kept) == 4
    assert r.answer == "42" and r.usage.rollouts == 4 and r.algorithm == "particle_filtering"


def test_resampling_draws_by_softmax_weight():
    hi, lo = Node(id=1, parent=0, depth=1), Node(id=2, parent=0, depth=1)
    hi.prm_score, lo.prm_score = 1.0, 0.0
    draws = [resample([hi, lo], 1.0, random.Random(s)) for s in range(400)]
    share = sum(d.count(hi) for d in draws) / (2 * len(draws))
    assert share == pytest.approx(2.718 / 3.718, abs=0.04)  # e / (e + 1)
    flat = [resample([hi, lo], 1e6, random.Random(s)) for s in range(400)]
    assert sum(d.count(hi) for d in flat) / 800 == pytest.approx(0.5, abs=0.05)
    assert resample([], 1.0, random.Random(0)) == []


async def test_particles_without_a_reward_model_are_independent_chains(sandbox):
    c = Components(ScriptedPolicy(particle_script()), sandbox)
    r = await run_search("particle_filtering", "p", c, Budget(rollouts=4), SearchConfig(seed=1))
    assert r.reward_source == "agreement" and r.usage.rollouts == 4
    assert len(r.tree.terminals()) == 4


def test_both_are_registered_beside_the_others():
    assert {"beam_search", "particle_filtering"} <= set(ALGORITHMS)
