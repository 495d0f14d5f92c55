"""Our process preference model (PPM): the policy's backbone with a one-label head.

A standard `*ForSequenceClassification` with `num_labels=1`, so transformers and vLLM's pooling
runner load it with no custom code. Its score of a step is tanh(logit) of the solution text up to
the end of that step, in the bare step format. Training uses the pairwise loss
−log σ(s⁺ − s⁻) (issue 6 trains it; the loss lives here with the model).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from search.protocols import ScoreRequest
from search.steps import render_prompt


def ppm_text(req: ScoreRequest) -> str:
    """What the PPM reads: the problem and the steps so far, in the bare step format."""
    return render_prompt(req.problem, req.steps, style="bare")


def logit_to_score(logit: float) -> float:
    return math.tanh(logit)


def init_ppm_from_backbone(backbone: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Write a PPM whose body is `backbone`'s and whose one-label head is freshly initialised
    (the start of PPM training; also a plumbing model for tests)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(backbone)
    model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = (
            tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        )
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def pairwise_loss(pos: Any, neg: Any) -> Any:
    """−log σ(s⁺ − s⁻), averaged: the PPM learns to rank the better step higher."""
    import torch.nn.functional as F

    return -F.logsigmoid(pos - neg).mean()
