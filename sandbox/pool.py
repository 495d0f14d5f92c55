"""A pool of warm workers (see `sandbox/worker.py`) and the host side of their protocol.

The pool is the `Sandbox` the search uses. It is independent of event loops: each execution
runs on one of the pool's threads, which talks to one worker over pipes, so a pool made once
serves every loop and thread of the server (and the synchronous command line). A worker that
dies, answers garbage or overruns its deadline is killed and replaced in the background; the
caller gets an error result, never a hang.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import queue
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from search.protocols import ExecLimits, ExecResult

log = logging.getLogger(__name__)

WORKER_SOURCE = (Path(__file__).with_name("worker.py")).read_text()


class SandboxUnavailable(RuntimeError):
    """The sandbox itself cannot run code (as opposed to code that failed)."""


def failure_kind(result: ExecResult) -> str | None:
    """One word for why a run failed, for metrics: None when it succeeded."""
    if result.ok:
        return None
    if result.timed_out:
        return "timeout"
    return result.killed or "error"


@dataclass
class SandboxStats:
    """Counters the server exports as metrics."""

    runs: int = 0
    seconds_total: float = 0.0
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    workers_replaced: int = 0


class _Worker:
    def __init__(self, argv: list[str], index: int, startup_timeout_s: float) -> None:
        self.index = index
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )
        self._buf = b""
        self._stderr: collections.deque[bytes] = collections.deque(maxlen=64)
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        line = self._read_line(time.monotonic() + startup_timeout_s)
        try:
            self.info = json.loads(line) if line else None
        except ValueError:
            self.info = None
        if not isinstance(self.info, dict) or not self.info.get("ready"):
            self.kill()
            raise SandboxUnavailable(self.stderr_tail() or "the worker exited before it was ready")

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for chunk in iter(lambda: self.proc.stderr.read1(4096), b""):  # type: ignore[union-attr]
            self._stderr.append(chunk)

    def stderr_tail(self) -> str:
        self.proc.poll()
        time.sleep(0.05)  # let the drain thread catch the last words of a dying process
        return b"".join(self._stderr).decode("utf-8", "replace").strip()[-2000:]

    def _read_line(self, deadline: float) -> bytes | None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            # poll, not select: select fails on descriptors above 1024 (a busy server has them)
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if not poller.poll(max(1, int(left * 1000))):
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def request(self, payload: dict, timeout_s: float) -> dict | None:
        """Send one request; the reply, or None if the worker failed to give a sane one."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(payload).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        line = self._read_line(time.monotonic() + timeout_s)
        if line is None:
            return None
        try:
            reply = json.loads(line)
        except ValueError:
            return None
        return reply if isinstance(reply, dict) and "ok" in reply else None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]


class WorkerPool:
    """`size` warm workers, each started by `argv_for(index)`."""

    def __init__(
        self,
        name: str,
        argv_for: Callable[[int], list[str]],
        size: int,
        limits: ExecLimits | None = None,
        startup_timeout_s: float = 60.0,
        grace_s: float = 3.0,
        acquire_timeout_s: float = 120.0,
        unavailable_hint: str = "",
    ) -> None:
        if size < 1:
            raise ValueError("a sandbox pool needs at least one worker")
        self.name = name
        self.size = size
        self.limits = limits or ExecLimits()
        self.stats = SandboxStats()
        self.observers: list[Callable[[ExecResult], None]] = []
        self._argv_for = argv_for
        self._startup_timeout_s = startup_timeout_s
        self._grace_s = grace_s
        self._acquire_timeout_s = acquire_timeout_s
        self._hint = unavailable_hint
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._workers: dict[int, _Worker] = {}
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"sandbox-{name}")

    # -- life cycle ---------------------------------------------------------------------------

    def _spawn(self, index: int) -> _Worker:
        try:
            worker = _Worker(self._argv_for(index), index, self._startup_timeout_s)
        except OSError as e:
            raise SandboxUnavailable(
                f"{self.name}: cannot start a worker: {e}. {self._hint}"
            ) from e
        except SandboxUnavailable as e:
            raise SandboxUnavailable(
                f"{self.name}: a worker failed to start: {e}. {self._hint}"
            ) from e
        with self._lock:
            self._workers[index] = worker
        return worker

    def start(self) -> WorkerPool:
        """Start every worker now; raises SandboxUnavailable (with how to fix it) if it can't."""
        with self._lock:
            if self._started:
                return self
            if self._closed:
                raise SandboxUnavailable(f"{self.name}: the sandbox pool is closed")
            self._started = True
        try:
            with ThreadPoolExecutor(max_workers=self.size) as ex:
                for worker in ex.map(self._spawn, range(self.size)):
                    self._idle.put(worker)
        except BaseException:
            self.close()
            raise
        return self

    def _replace(self, index: int) -> None:
        delay = 1.0
        while not self._closed:
            try:
                worker = self._spawn(index)
            except SandboxUnavailable as e:
                log.error(
                    "sandbox worker %d could not be replaced (retrying in %.0fs): %s",
                    index,
                    delay,
                    e,
                )
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            if self._closed:
                worker.kill()
                return
            self.stats.workers_replaced += 1
            self._idle.put(worker)
            return

    def close(self) -> None:
        self._closed = True
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for worker in workers:
            worker.kill()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- execution ----------------------------------------------------------------------------

    def run_sync(self, code: str, limits: ExecLimits | None = None) -> ExecResult:
        lim = limits or self.limits
        if not self._started:
            self.start()
        t0 = time.monotonic()
        try:
            worker = self._idle.get(timeout=self._acquire_timeout_s)
        except queue.Empty:
            why = f"sandbox: no worker free within {self._acquire_timeout_s:g}s"
            return self._observe(self._broken(why, t0))
        payload = {
            "code": code,
            "timeout_s": lim.timeout_s,
            "memory_mb": lim.memory_mb,
            "output_bytes": lim.output_bytes,
        }
        reply = worker.request(payload, lim.timeout_s + self._grace_s)
        if reply is None:
            log.warning(
                "sandbox worker %d misbehaved (%s); replacing it",
                worker.index,
                worker.stderr_tail() or "no reply",
            )
            worker.kill()
            threading.Thread(target=self._replace, args=(worker.index,), daemon=True).start()
            why = "sandbox: the worker died or stopped answering; it was replaced"
            return self._observe(self._broken(why, t0))
        self._idle.put(worker)
        return self._observe(
            ExecResult(
                ok=bool(reply.get("ok")),
                stdout=str(reply.get("stdout") or ""),
                error=reply.get("error"),
                timed_out=bool(reply.get("timed_out")),
                killed=reply.get("killed"),
                elapsed_s=float(reply.get("elapsed_s") or 0.0),
            )
        )

    async def run(self, code: str, limits: ExecLimits | None = None) -> ExecResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.run_sync, code, limits)

    @staticmethod
    def _broken(why: str, t0: float) -> ExecResult:
        return ExecResult(False, error=why, killed="sandbox", elapsed_s=time.monotonic() - t0)

    def _observe(self, result: ExecResult) -> ExecResult:
        self.stats.runs += 1
        self.stats.seconds_total += result.elapsed_s
        kind = failure_kind(result)
        if kind:
            self.stats.failures[kind] += 1
        for observer in self.observers:
            try:
                observer(result)
            except Exception:
                log.exception("sandbox observer failed")
        return result

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.proc.pid for w in self._workers.values()]
