"""The explicit unsafe local backend: results, limits, and error text for the prompt."""

import time

from sandbox.local import LocalSandbox
from search.protocols import ExecLimits


async def test_runs_code_and_captures_stdout():
    r = await LocalSandbox().run("x = 6 * 7\nprint(x)\n")
    assert r.ok and r.stdout == "42\n" and r.error is None


async def test_exception_reports_the_error_line():
    r = await LocalSandbox().run("a = 1\nb = a / 0\n")
    assert not r.ok and r.error.startswith("ZeroDivisionError") and "line 2" in r.error


async def test_wall_clock_limit_kills_the_process_group():
    t0 = time.monotonic()
    r = await LocalSandbox().run(
        "import subprocess, time\nsubprocess.Popen(['sleep', '100'])\ntime.sleep(100)\n",
        ExecLimits(timeout_s=1.0),
    )
    assert r.timed_out and not r.ok and time.monotonic() - t0 < 5


async def test_output_is_capped():
    r = await LocalSandbox().run(
        "while True:\n    print('x' * 1000)\n", ExecLimits(output_bytes=10_000)
    )
    assert not r.ok and r.killed == "output" and len(r.stdout) == 10_000


async def test_memory_limit():
    r = await LocalSandbox().run("x = bytearray(2 * 1024**3)\n", ExecLimits(memory_mb=256))
    assert not r.ok and "MemoryError" in r.error


async def test_input_sees_end_of_file_and_exit_codes_are_failures():
    r = await LocalSandbox().run("input()\n")
    assert not r.ok and "EOFError" in r.error
    r = await LocalSandbox().run("import sys\nsys.exit(3)\n")
    assert not r.ok
