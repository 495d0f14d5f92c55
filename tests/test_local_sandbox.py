"""The explicit unsafe local backend: same workers and limits, no jail; only by choice."""

import logging
import time

import pytest

from sandbox import SandboxSettings, create_sandbox
from search.protocols import ExecLimits


@pytest.fixture(scope="module")
def local():
    pool = create_sandbox(SandboxSettings(backend="local", workers=1))
    with pool:
        yield pool


def test_choosing_it_warns(caplog):
    with caplog.at_level(logging.WARNING):
        create_sandbox(SandboxSettings(backend="local", workers=1)).close()
    assert "WITHOUT isolation" in caplog.text


async def test_runs_code_and_captures_stdout(local):
    r = await local.run("x = 6 * 7\nprint(x)\n")
    assert r.ok and r.stdout == "42\n" and r.error is None
    assert local.name == "local"


async def test_exception_reports_the_error_line(local):
    r = await local.run("a = 1\nb = a / 0\n")
    assert not r.ok and r.error == "ZeroDivisionError: division by zero (line 2)"


async def test_wall_clock_limit(local):
    t0 = time.monotonic()
    r = await local.run("import time\ntime.sleep(100)\n", ExecLimits(timeout_s=1.0))
    assert r.timed_out and not r.ok and time.monotonic() - t0 < 4


async def test_output_is_capped(local):
    r = await local.run("while True:\n    print('x' * 1000)\n", ExecLimits(output_bytes=10_000))
    assert not r.ok and r.killed == "output" and len(r.stdout) == 10_000


async def test_memory_limit(local):
    r = await local.run("x = bytearray(2 * 1024**3)\n", ExecLimits(memory_mb=256))
    assert not r.ok and r.killed == "memory" and r.error.startswith("MemoryError")


async def test_subprocesses_are_refused(local):
    r = await local.run("import subprocess\nsubprocess.run(['true'])\n")
    assert not r.ok and r.error.startswith("PermissionError")
