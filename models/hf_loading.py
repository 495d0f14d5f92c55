"""Loading transformers models on the configured device and dtype."""

from __future__ import annotations

from typing import Any


def resolve_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def load_tokenizer(path: str, padding_side: str, truncation_side: str = "right") -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    tok.truncation_side = truncation_side
    return tok


def load_model(auto_class: Any, path: str, device: str, dtype: str, **kwargs: Any) -> Any:
    dev = resolve_device(device)
    model = auto_class.from_pretrained(path, dtype=resolve_dtype(dtype, dev), **kwargs)
    return model.to(dev).eval()
