"""The explicit *unsafe* local backend: each path's code in a fresh local Python process.

No isolation beyond a process, a wall clock, an address-space rlimit and an output cap: the
code can read and write whatever the server's user can. For platforms without namespaces and
for tests; never chosen silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time

from search.protocols import ExecLimits, ExecResult

# Runs inside the child: apply limits, then execute the program read from stdin.
_BOOTSTRAP = """\
import os, resource, sys
mem = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
src = sys.stdin.read()
sys.stdin = open(os.devnull)
sys.argv = ["<step>"]
exec(compile(src, "<step>", "exec"), {"__name__": "__main__"})
"""


class LocalSandbox:
    name = "local"

    def __init__(self, limits: ExecLimits | None = None, python: str = sys.executable) -> None:
        self.limits = limits or ExecLimits()
        self.python = python

    async def run(self, code: str, limits: ExecLimits | None = None) -> ExecResult:
        lim = limits or self.limits
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            self.python,
            "-I",
            "-c",
            _BOOTSTRAP,
            str(lim.memory_mb * 1024 * 1024),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group, so a kill takes its children too
        )
        killed: str | None = None
        timed_out = False

        async def feed() -> None:
            assert proc.stdin is not None
            try:
                proc.stdin.write(code.encode())
                await proc.stdin.drain()
                proc.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                pass

        async def read(stream: asyncio.StreamReader) -> bytes:
            nonlocal killed
            buf = bytearray()
            while chunk := await stream.read(65536):
                buf += chunk
                if len(buf) > lim.output_bytes:
                    killed = "output"
                    _kill(proc.pid)
                    return bytes(buf[: lim.output_bytes])
            return bytes(buf)

        assert proc.stdout is not None and proc.stderr is not None
        io = asyncio.gather(feed(), read(proc.stdout), read(proc.stderr), proc.wait())
        try:
            _, out, err, rc = await asyncio.wait_for(io, lim.timeout_s)
        except TimeoutError:
            timed_out = True
            _kill(proc.pid)
            await proc.wait()
            out, err, rc = b"", b"", proc.returncode
        except BaseException:
            _kill(proc.pid)
            raise
        _kill(proc.pid)  # reap any grandchildren left in the group
        stdout = out.decode("utf-8", errors="replace")
        stderr = err.decode("utf-8", errors="replace")
        elapsed = time.monotonic() - t0
        if timed_out:
            return ExecResult(
                False, stdout, f"timed out after {lim.timeout_s:g}s", True, None, elapsed
            )
        if killed:
            return ExecResult(
                False, stdout, f"output over {lim.output_bytes} bytes", False, killed, elapsed
            )
        if rc != 0:
            if rc is not None and rc < 0:
                error = f"killed by signal {signal.Signals(-rc).name}"
                if "MemoryError" in stderr:
                    error = "MemoryError"
                return ExecResult(False, stdout, error, False, "signal", elapsed)
            return ExecResult(
                False, stdout, _last_error(stderr) or f"exit status {rc}", False, None, elapsed
            )
        return ExecResult(True, stdout, None, False, None, elapsed)


def _last_error(stderr: str) -> str:
    """The exception line of a traceback (its last non-empty line), with the line number."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    where = next(
        (ln.strip() for ln in reversed(lines) if ln.strip().startswith('File "<step>"')), ""
    )
    return f"{lines[-1].strip()} ({where})" if where else lines[-1].strip()


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
