"""The memory allocator a training process runs with, chosen by `LD_PRELOAD` at its start.

glibc's malloc hands every block above its mmap threshold (at most 32 MB) back to the kernel on
free, and the kernel zeroes fresh pages on the next fault. A CPU training step allocates and
frees gigabyte tensors (the fp32 logits over a 152k vocabulary) many times, so on 2 cores a
fifth to a third of the trainer's CPU time went to the kernel. jemalloc and tcmalloc keep freed
pages for reuse; tcmalloc gave 1.41x glibc's tokens/s there, jemalloc 0.89x
(`benchmarks/train_allocator.py`). It has to be preloaded: an allocator cannot be swapped
inside a running Python.
"""

from __future__ import annotations

import ctypes.util
from collections.abc import Mapping
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Allocator = Literal["glibc", "jemalloc", "tcmalloc"]

LIBRARIES: dict[str, tuple[str, ...]] = {
    # Debian's libjemalloc2 / libtcmalloc-minimal4 (scripts/setup.sh installs the second)
    "jemalloc": ("jemalloc",),
    "tcmalloc": ("tcmalloc_minimal", "tcmalloc"),
}


class AllocatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RSTAR_", extra="ignore")

    train_allocator: Allocator = Field(
        "tcmalloc",
        description="allocator preloaded into training processes: tcmalloc (1.41x glibc's "
        "tokens/s on 2 AVX2 cores), jemalloc or glibc",
    )


def library(allocator: str) -> str | None:
    """The shared object to preload for `allocator` (None for glibc, or when not installed)."""
    for name in LIBRARIES.get(allocator, ()):
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def preload_env(allocator: str, env: Mapping[str, str]) -> dict[str, str]:
    """`env` with `allocator` first in LD_PRELOAD; `env` unchanged for glibc or when the
    library is missing (training still runs, only slower)."""
    out = dict(env)
    lib = library(allocator)
    if lib is None or lib in out.get("LD_PRELOAD", ""):
        return out
    out["LD_PRELOAD"] = ":".join(p for p in (lib, out.get("LD_PRELOAD")) if p)
    return out
