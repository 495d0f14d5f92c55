"""Remote backends against real local `vllm serve` processes (CPU) of the tiny model and of small
models built on it (a PPM, a step-tag PRM); and a server that is not there, which needs no vLLM."""

import importlib.util

import pytest

from models.hf_reward import TransformersPPM
from models.remote import RemoteError, RemotePolicy, RemoteReward
from search.protocols import GenerationRequest
from search.steps import STEP_STOPS
from tests.support.model_fixtures import PROMPT
from tests.support.model_fixtures import SCORE_REQUESTS as REQS
from tests.support.vllm_server import free_port, vllm_server


# the tests that start a server need vLLM (the one against no server does not), and the time
# `vllm serve` takes to start: seconds alone, minutes on a busy machine
def needs_vllm(test):
    no_vllm = importlib.util.find_spec("vllm") is None
    return pytest.mark.timeout(300)(pytest.mark.skipif(no_vllm, reason="needs vLLM")(test))


@needs_vllm
async def test_remote_policy_against_vllm_serve(tiny_model_path):
    with vllm_server(tiny_model_path) as url:
        policy = RemotePolicy(url)  # discovers the served model's name
        reqs = [
            GenerationRequest(PROMPT, n=3, max_tokens=40, temperature=0.8, stop=STEP_STOPS, seed=1),
            GenerationRequest(PROMPT, n=1, max_tokens=40, temperature=0.0, stop=STEP_STOPS),
        ]
        out = await policy.generate(reqs)
        await policy.aclose()
    assert [len(g) for g in out] == [3, 1]
    gens = out[0] + out[1]
    assert all(g.stop in (*STEP_STOPS, None) for g in gens)
    assert any(g.stop is not None for g in gens)  # vLLM says which stop string fired
    assert sum(g.tokens for g in gens) > 0


@needs_vllm
async def test_remote_ppm_against_vllm_serve_pooling(tiny_ppm_path):
    hf = TransformersPPM(tiny_ppm_path)
    expected = await hf.score(REQS)
    hf.close()
    with vllm_server(tiny_ppm_path, "--runner", "pooling") as url:
        ppm = RemoteReward(url, kind="ppm")
        scores = await ppm.score(REQS)
        await ppm.aclose()
    assert scores == pytest.approx(expected, abs=2e-3)


@needs_vllm
@pytest.mark.parametrize(
    "pooler",
    [
        # as a PRM is served: scores at the step tags only (vLLM defaults the tag to Qwen's
        # <extra_0> id; our tiny tokenizer has it elsewhere)
        '{"step_tag_id": %d}',
        # a server that returns every token's scores: the backend finds the tags through the
        # server's tokenizer
        '{"tok_pooling_type": "ALL"}',
    ],
)
async def test_remote_step_tag_prm(tiny_prm_path, pooler):
    from transformers import AutoTokenizer

    tag_id = AutoTokenizer.from_pretrained(tiny_prm_path).convert_tokens_to_ids("<extra_0>")
    config = pooler % tag_id if "%d" in pooler else pooler
    with vllm_server(tiny_prm_path, "--runner", "pooling", "--pooler-config", config) as url:
        prm = RemoteReward(url, kind="step_tag_prm", step_tag="<extra_0>")
        scores = await prm.score(REQS)
        await prm.aclose()
    assert len(scores) == 2 and all(-1 <= s <= 1 for s in scores)
    assert scores[0] != scores[1]


async def test_unreachable_server_is_a_clear_error():
    policy = RemotePolicy(f"http://127.0.0.1:{free_port()}/v1", model="x", timeout_s=5)
    with pytest.raises(RemoteError, match="ConnectError"):
        await policy.generate([GenerationRequest(PROMPT, stop=STEP_STOPS)])
    await policy.aclose()
