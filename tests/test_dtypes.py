"""Dtypes follow the hardware: bf16 only where it is native (training's mixed precision and
vLLM's "auto" on a CPU), since an AVX2-only CPU emulates it several times slower than fp32."""

import pytest

from models.vllm_engine import engine_dtype
from training.common import resolve_precision


@pytest.fixture
def cpu(monkeypatch):
    """Set what the CPU (and whether a GPU) is said to have."""
    import torch

    def set_(avx512_bf16: bool = False, amx: bool = False, cuda: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)

    return set_


def test_auto_precision_is_bf16_only_where_the_hardware_has_it(cpu, monkeypatch):
    import torch

    for avx512_bf16, amx, expected in (
        (False, False, "no"),
        (True, False, "bf16"),
        (False, True, "bf16"),
    ):
        cpu(avx512_bf16, amx)
        assert resolve_precision("auto") == expected
    assert resolve_precision("bf16") == "bf16" and resolve_precision("no") == "no"
    cpu(cuda=True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto") == "fp16"


def test_vllm_on_a_cpu_without_native_bf16_runs_fp32(cpu):
    cpu()
    assert engine_dtype("auto", on_cpu=True) == "float32"
    assert engine_dtype("bfloat16", on_cpu=True) == "bfloat16"  # asked for: kept
    assert engine_dtype("auto", on_cpu=False) == "auto"  # GPUs: vLLM's own choice
    cpu(avx512_bf16=True)
    assert engine_dtype("auto", on_cpu=True) == "auto"
