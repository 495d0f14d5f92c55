"""Small real models for tests: a tiny step-tag PRM, and the prompt and score requests the
engine tests send."""

from __future__ import annotations

import json
from pathlib import Path

from search.protocols import ScoreRequest
from search.steps import render_prompt

STEP_TAG = "<extra_0>"
PROMPT = render_prompt("What is 12*7?", [], "few_shot")
_STEP1 = "# Step 1: add\nx = 2 + 3\n<end_of_step>\n"
SCORE_REQUESTS = [
    ScoreRequest("What is 2+3?", (_STEP1,)),
    ScoreRequest("What is 2+3?", (_STEP1, "print(x)\n<end_of_code>\n")),
]
# three plain steps, the second with a code block and its output
TEXT_SCORE_REQUEST = ScoreRequest(
    "What is 2+3?",
    (
        "We add 2 and 3.\n\n",
        "```python\nprint(2 + 3)\n```\n```output\n5\n```\n\n",
        "So the answer is $\\boxed{5}$.\n\n",
    ),
    "text",
)


def build_tiny_step_tag_prm(out: Path, tokenizer_from: str, seed: int = 0) -> Path:
    """A Qwen2ForProcessRewardModel with random weights and the real head's shape
    (hidden→hidden, ReLU, hidden→2), on the tokenizer of `tokenizer_from` (the tests pass the tiny
    model's) plus the step tag."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, Qwen2Config, Qwen2Model

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(tokenizer_from)
    tok.add_special_tokens({"additional_special_tokens": [STEP_TAG]})
    h = 128  # two heads of 64: vLLM-CPU attention supports head_dim 64 and up
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=h,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        num_labels=2,
        architectures=["Qwen2ForProcessRewardModel"],
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    body = Qwen2Model(config)
    weights = {f"model.{k}": v.contiguous() for k, v in body.state_dict().items()}
    weights["score.0.weight"] = torch.randn(h, h) * 0.1
    weights["score.0.bias"] = torch.zeros(h)
    weights["score.2.weight"] = torch.randn(2, h) * 0.1
    weights["score.2.bias"] = torch.zeros(2)
    out.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = config.to_dict()
    cfg["dtype"] = "float32"
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    tok.save_pretrained(out)
    return out
