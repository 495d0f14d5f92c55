"""The allocator preloaded into training processes (training/allocator.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from training import allocator
from training.allocator import library, preload_env


def test_preload_puts_the_allocator_first_and_keeps_what_was_there() -> None:
    lib = library("tcmalloc")
    assert lib, "scripts/setup.sh installs libtcmalloc-minimal4"
    env = preload_env("tcmalloc", {"LD_PRELOAD": "libfoo.so", "X": "1"})
    assert env == {"LD_PRELOAD": f"{lib}:libfoo.so", "X": "1"}
    assert preload_env("tcmalloc", env) == env  # not twice
    assert preload_env("glibc", {"X": "1"}) == {"X": "1"}


def test_a_missing_library_leaves_the_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: None)
    assert preload_env("jemalloc", {"X": "1"}) == {"X": "1"}


def test_the_child_process_runs_with_the_preloaded_allocator() -> None:
    maps = subprocess.run(
        [sys.executable, "-c", "print(open('/proc/self/maps').read())"],
        env=preload_env("tcmalloc", {}),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "libtcmalloc" in maps
