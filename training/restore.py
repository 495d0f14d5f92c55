"""A round's weights from its committed LoRA adapter, merged onto the model it was trained from.

A trained phase commits its adapter (fp16, ~18 MB for the 0.5B model) and records its sha256;
the merged checkpoint is not committed. On a machine without it, merging the adapter onto the
phase's init model (the hash-checked base, or the previous round's policy) takes about a minute,
where training it again takes hours on CPU. The init model of a later round is an earlier
round's policy, so rounds are restored in order.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from evaluation.problems import file_sha256
from training.common import ADAPTER_DIR, ADAPTER_WEIGHTS, HEAD_RECORD, TRAINING_RECORD
from training.manifest import replace_dir

log = logging.getLogger(__name__)


def adapter_path(ckpt: Path) -> Path:
    return ckpt / ADAPTER_DIR / ADAPTER_WEIGHTS


def adapter_sha256(ckpt: Path) -> str | None:
    """The sha256 of the checkpoint's adapter weights, None when it has none (full training)."""
    path = adapter_path(ckpt)
    return file_sha256(path) if path.exists() else None


def head_sha256(ckpt: Path) -> str | None:
    """The sha256 of a head PPM's head (training/ppm_head.py), None when it has none."""
    path = ckpt / HEAD_RECORD
    return file_sha256(path) if path.exists() else None


def can_restore(ckpt: Path, counts: dict[str, Any]) -> bool:
    """Is the adapter (or head) there, and is it the one the round recorded?"""
    if counts.get("head_sha256"):
        return head_sha256(ckpt) == counts["head_sha256"]
    sha = counts.get("adapter_sha256")
    return sha is not None and adapter_sha256(ckpt) == sha


def restore(kind: Literal["sft", "ppm"], init: str, ckpt: Path) -> Path:
    """The checkpoint back from what is committed: a head PPM from its head, else the
    adapter merged."""
    if kind == "ppm" and (ckpt / HEAD_RECORD).exists():
        from training.ppm_head import load_head, save_ppm

        head, report = load_head(ckpt)
        tmp = Path(tempfile.mkdtemp(prefix=f".{ckpt.name}.restore-", dir=ckpt.parent))
        try:
            save_ppm(init, head, tmp / "out", report)
            replace_dir(tmp / "out", ckpt)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return ckpt
    return merge_adapter(kind, init, ckpt)


def merge_adapter(kind: Literal["sft", "ppm"], init: str, ckpt: Path) -> Path:
    """Write the merged checkpoint into `ckpt` (its adapter and training record kept): the
    policy is `init` + the adapter; the PPM is a one-label head on `init`'s backbone + the
    adapter, whose saved modules include the trained head. Written beside `ckpt` and renamed
    into place, so a crash leaves no half checkpoint."""
    import torch
    from peft import PeftModel
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    from models.ppm import init_ppm_from_backbone

    tmp = Path(tempfile.mkdtemp(prefix=f".{ckpt.name}.restore-", dir=ckpt.parent))
    try:
        if kind == "sft":
            model = AutoModelForCausalLM.from_pretrained(init, dtype=torch.float32)
        else:
            head = init_ppm_from_backbone(init, tmp / "init")
            model = AutoModelForSequenceClassification.from_pretrained(head, dtype=torch.float32)
        model = PeftModel.from_pretrained(model, str(ckpt / ADAPTER_DIR)).merge_and_unload()
        model.config.use_cache = True
        out = tmp / "out"
        model.save_pretrained(out, safe_serialization=True)
        AutoTokenizer.from_pretrained(init).save_pretrained(out)
        shutil.copytree(ckpt / ADAPTER_DIR, out / ADAPTER_DIR)
        if (ckpt / TRAINING_RECORD).exists():
            shutil.copy2(ckpt / TRAINING_RECORD, out / TRAINING_RECORD)
        replace_dir(out, ckpt)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("%s: merged its adapter onto %s", ckpt, init)
    return ckpt
