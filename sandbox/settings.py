"""Sandbox configuration from the environment (`RSTAR_SANDBOX=nsjail|local`, `RSTAR_SANDBOX_*`)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RSTAR_SANDBOX_", populate_by_name=True)

    backend: Literal["nsjail", "local"] = Field(
        "nsjail",
        validation_alias=AliasChoices("RSTAR_SANDBOX", "RSTAR_SANDBOX_BACKEND", "backend"),
        description="nsjail (default) or local: UNSAFE, no isolation; only ever by choice",
    )
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    timeout_s: float = Field(10.0, gt=0, le=600, description="wall clock per execution")
    memory_mb: int = Field(1024, ge=16, description="address space a step may add")
    output_bytes: int = Field(64 * 1024, ge=1024, description="stdout+stderr read before a kill")
    nsjail_path: str | None = Field(None, description="nsjail binary (default: the bundled one)")
    base_uid: int = Field(
        61000, ge=1000, description="as root, worker i runs as uid/gid base_uid+i"
    )
    scratch_mb: int = Field(16, ge=1, description="size of each worker's private tmpfs")
    max_processes: int = Field(32, ge=4, description="RLIMIT_NPROC (and pids.max) per jail")
    seccomp: bool = Field(
        True, description="the syscall policy of sandbox/policy.py (off only to measure its cost)"
    )
    cgroups: Literal["auto", "v2", "v1", "off"] = Field(
        "auto", description="per-jail cgroup limits: the first hierarchy that works, or none"
    )
    jail_memory_mb: int | None = Field(
        None,
        ge=64,
        description="cgroup memory per jail, tmpfs included "
        "(default: memory_mb + scratch_mb + 256 for the worker itself)",
    )
    jail_cpus: float = Field(1.0, gt=0, le=64, description="cgroup CPU share per jail")

    @property
    def jail_memory(self) -> int:
        return self.jail_memory_mb or self.memory_mb + self.scratch_mb + 256
