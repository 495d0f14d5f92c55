"""Greedy, best-of-N and self-consistency on the same protocols and budget as MCTS, and every
algorithm (beam search and particle filtering too) held to the same token and time limits."""

import pytest

from search import ALGORITHMS, Budget, Components, SearchConfig, run_search
from tests.support.scripted import ScriptedPolicy, ScriptedReward


def chain_script():
    """Samples cycle through three first steps; answers 6, 6, 7 (the first, 6, scores low)."""
    firsts = [("a", 6), ("b", 6), ("c", 7)]
    return {
        (): [f"# Step 1: {k}\nx = {v}\n<end_of_step>" for k, v in firsts],
        **{
            (f"# Step 1: {k}\nx = {v}",): [f"# final {k}\nprint(x)\n<end_of_code>"]
            for k, v in firsts
        },
    }


REWARD = {"final a": 0.1, "final b": 0.2, "final c": 0.8}


async def test_greedy_is_one_chain_at_temperature_zero(sandbox):
    policy = ScriptedPolicy(chain_script())
    r = await run_search("greedy", "p", Components(policy, sandbox), Budget(rollouts=9))
    assert r.answer == "6" and r.usage.rollouts == 1
    assert all(req.temperature == 0.0 and req.n == 1 for call in policy.calls for req in call)


async def test_best_of_n_takes_the_reward_models_favourite(sandbox):
    policy = ScriptedPolicy(chain_script())
    reward = ScriptedReward(REWARD)
    comps = Components(policy, sandbox, reward)
    r = await run_search("best_of_n", "p", comps, Budget(rollouts=6))
    assert r.answer == "7" and r.score == pytest.approx(0.8)
    assert r.reward_source == "reward_model" and r.usage.rollouts == 6
    # it reads only the final steps' scores, so only they are scored
    assert reward.calls == [6] and all(n.prm_score is None for n in r.tree if not n.final)


async def test_self_consistency_takes_the_majority(sandbox):
    policy = ScriptedPolicy(chain_script())
    reward = ScriptedReward(REWARD)
    comps = Components(policy, sandbox, reward)
    r = await run_search("self_consistency", "p", comps, Budget(rollouts=6))
    assert r.answer == "6"
    assert [(a.answer, a.count) for a in r.alternatives] == [("6", 4), ("7", 2)]
    assert reward.calls == [] and r.reward_source == "agreement"  # a vote: no verifier


async def test_best_of_n_without_reward_model_says_it_used_agreement(sandbox):
    r = await run_search(
        "best_of_n",
        "p",
        Components(ScriptedPolicy(chain_script()), sandbox),
        Budget(rollouts=6),
    )
    assert r.reward_source == "agreement" and r.answer == "6"


async def test_chains_are_batched_one_call_per_step(sandbox):
    policy = ScriptedPolicy(chain_script())
    await run_search("self_consistency", "p", Components(policy, sandbox), Budget(rollouts=6))
    assert policy.step_batches == [1, 6]  # root asked for n=6 at once, then 6 chains together
    assert policy.calls[0][0].n == 6


def one_step_at_a_time(path):
    """A policy that never finishes: one new step below every path."""
    k = len(path) + 1
    return [f"# Step {k}\nv{k} = {k}\n<end_of_step>"]


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
async def test_every_algorithm_honours_the_same_token_budget(algorithm, sandbox):
    policy = ScriptedPolicy(default=one_step_at_a_time)
    r = await run_search(
        algorithm,
        "p",
        Components(policy, sandbox),
        Budget(rollouts=4, max_tokens=40),
        SearchConfig(max_depth=50),
    )
    assert r.stopped_by == "max_tokens"
    # within one call of it: past it by the last call, or (MCTS) short of it by the wave that
    # would not have fit
    assert abs(r.usage.tokens - 40) < max(policy.call_tokens)
    assert r.usage.policy_calls == len(policy.calls)


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
async def test_every_algorithm_honours_the_same_time_limit(algorithm, sandbox):
    """The call in flight at the limit is cancelled, not waited for: the policy answers its
    first call at once and takes a minute over each later one."""

    class SlowAfterTheFirstCall(ScriptedPolicy):
        async def generate(self, requests):
            self.delay_s = 60.0 if self.calls else 0.0
            return await super().generate(requests)

    policy = SlowAfterTheFirstCall(default=one_step_at_a_time)
    r = await run_search(
        algorithm,
        "p",
        Components(policy, sandbox),
        Budget(rollouts=4, time_limit_s=1.0),
        SearchConfig(max_depth=50),
    )
    assert r.stopped_by == "time_limit_s"
    assert len(policy.calls) == 2 and policy.cancelled == 1  # the slow call, cut off
    assert 1.0 <= r.usage.elapsed_s < 30  # generous on a busy machine: the call takes 60 s
    assert r.usage.policy_calls == 1 and r.usage.tokens > 0  # only what came back counts
    assert r.algorithm == algorithm and len(r.tree) > 1


async def test_chains_record_their_tree_with_backed_up_rewards(sandbox):
    r = await run_search(
        "self_consistency",
        "p",
        Components(ScriptedPolicy(chain_script()), sandbox),
        Budget(rollouts=3),
        gold="6",
    )
    t = r.tree
    assert len(t.children(t.root)) == 3
    assert t.root.visits == 3 and t.root.value_sum == pytest.approx(1 + 1 - 1)
    assert r.correct is True


@pytest.mark.parametrize("algorithm", ["best_of_n", "self_consistency"])
async def test_under_a_token_budget_chains_start_in_waves_as_many_as_fit(algorithm, sandbox):
    """Budget: 1000 rollouts and 300 tokens. A chain costs ~24 tokens here (two steps and an
    answer; the scripted policy counts a token per 4 characters): about a dozen fit, started
    four at a time, and the last wave starts only what the tokens left can finish."""
    policy = ScriptedPolicy(chain_script())
    r = await run_search(
        algorithm,
        "p",
        Components(policy, sandbox, ScriptedReward(REWARD)),
        Budget(rollouts=1000, max_tokens=300),
    )
    t = r.tree
    chains = len(t.children(t.root))
    assert 9 <= chains <= 14
    assert r.usage.rollouts == chains - sum(1 for c in t.children(t.root) if not c.children)
    assert all(c.n <= 4 for call in policy.calls for c in call)  # never more than a wave
    assert r.usage.tokens <= 300 + max(policy.call_tokens)
    assert len(t.terminals()) >= chains - 4  # few chains cut short
