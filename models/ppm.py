"""Our process preference model (PPM): the policy's backbone with a one-label head.

A standard `*ForSequenceClassification` with `num_labels=1`, so transformers and vLLM's pooling
runner load it with no custom code. Its score of a step is tanh(logit) of the solution text up to
the end of that step, in the bare step format. Training uses the pairwise loss
−log σ(s⁺ − s⁻) (training/ppm_train.py trains it; the loss lives here with the model).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from search.protocols import ScoreRequest
from search.steps import ASSISTANT, USER, render_prompt


def ppm_text(req: ScoreRequest) -> str:
    """What the PPM reads: the problem and the steps so far, in the bare step format (text
    steps after the same problem turn, as written)."""
    if req.step_format == "text":
        return f"{USER}:\n{req.problem.strip()}\n{ASSISTANT}: " + "".join(req.steps)
    return render_prompt(req.problem, req.steps, style="bare")


def logit_to_score(logit: float) -> float:
    return math.tanh(logit)


def init_ppm_from_backbone(
    backbone: str, out_dir: str | Path, seed: int = 0, zero_head: bool = True
) -> Path:
    """Write a PPM whose body is `backbone`'s and whose one-label head is new: zero (the start
    of PPM training: every score tanh(0) = 0, where tanh's slope is 1) or, with
    `zero_head=False`, random (a plumbing model for tests, whose scores differ). A random head
    is a poor start: Qwen2.5-0.5B's last hidden state has a norm near 210, so the default
    N(0, 0.02²) head gives logits of ±2, already on tanh's flat part."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(backbone)
    model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = (
            tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        )
    if zero_head:
        with torch.no_grad():
            for p in head_parameters(model):
                p.zero_()
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


HEAD_MODULES = ("score", "classifier")  # the one-label head's name in transformers' models


def is_head_parameter(name: str) -> bool:
    """Is the parameter called `name` (as named_parameters() gives it, peft's wrapping too)
    part of a sequence classifier's head?"""
    return any(f".{m}." in f".{name}" for m in HEAD_MODULES)


def head_parameters(model: Any) -> list[Any]:
    return [p for n, p in model.named_parameters() if is_head_parameter(n)]


def pairwise_loss(pos: Any, neg: Any) -> Any:
    """−log σ(s⁺ − s⁻), averaged: the PPM learns to rank the better step higher."""
    import torch.nn.functional as F

    return -F.logsigmoid(pos - neg).mean()
