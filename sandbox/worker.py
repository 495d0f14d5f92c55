"""The warm worker: a long-lived Python that forks once per execution.

Runs inside the jail (or, for the unsafe local backend, as a plain process). Standard library
only, because it is started from its source text, not imported. The math libraries are imported
once at start, so each execution is a fork of an interpreter that already has them.

Protocol: one JSON object per line. The worker prints {"ready": ...} once, then answers each
request {"code", "timeout_s", "memory_mb", "output_bytes"} with one result line
{"ok", "stdout", "stderr", "error", "timed_out", "killed", "elapsed_s"}.

Per execution the child: starts a new session (its own process group), runs in a fresh empty
directory, gets /dev/null as stdin and pipes as stdout/stderr, hard CPU and address-space
limits, and an audit hook that refuses to start programs or fork (so `os.system`, `subprocess`
and fork bombs fail as a clean error; the jail's limits are what contain code that gets past
it). The parent enforces the wall clock, reads output up to a cap, then kills the child's
process group and, when it is PID 1 of its own PID namespace (in the jail), every other process
in it, and then empties the whole scratch directory — the run's own directory and anything the
step wrote beside it — so nothing of one execution survives into the next, and the space one
filled is free again before the next one starts.

Usage: python -I worker.py [SCRATCH_DIR]   (runs get fresh directories inside SCRATCH_DIR; a
temporary directory, removed at exit, when none is given)
"""

import builtins
import contextlib
import gc
import io
import json
import math
import os
import resource
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback

PRELOAD = (
    "math", "cmath", "fractions", "decimal", "itertools", "functools", "collections",
    "statistics", "random", "re", "string", "numpy", "sympy",
)  # fmt: skip

_BLOCKED = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
            "subprocess.Popen", "pty.spawn")  # fmt: skip
_PAGE = os.sysconf("SC_PAGE_SIZE")
_STATUS_CAP = 64 * 1024


def _audit(event, args):
    if event.startswith(_BLOCKED):
        raise PermissionError(f"{event} is not allowed in a step")


def _describe(exc):
    """'Type: message (line N)' for the innermost frame of the step's own code."""
    try:
        msg = str(exc)
    except BaseException:
        msg = "<unprintable>"
    text = type(exc).__name__ + (f": {msg[:500]}" if msg else "")
    line = None
    with contextlib.suppress(BaseException):
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename == "<step>":
                line = frame.lineno
    return text + (f" (line {line})" if line else "")


def _child(run_dir, req_r, out_w, err_w, st_w):
    """In the forked child: isolate, wait for the request, limit, run it, report on st_w."""
    try:
        os.setsid()
        os.chdir(run_dir)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        for fd in (devnull, out_w, err_w):
            os.close(fd)
        sys.stdin = open(os.devnull)  # noqa: SIM115
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), "utf-8", "backslashreplace")
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), "utf-8", "backslashreplace")
        sys.argv = ["<step>"]
        # Copy-on-write faults of a first run of code cost more than the run itself: take them
        # now, while the worker is idle, not after the request arrives.
        exec(compile("x = [i * 2 for i in range(3)]\nstr(x)\n", "<warm>", "exec"), {})
        json.loads(json.dumps({"code": "", "timeout_s": 1.0}))
        with open("/proc/self/statm") as f:
            vm = int(f.read().split()[0]) * _PAGE
        with os.fdopen(req_r, "rb") as f:  # blocks until the worker hands over a request
            raw = f.read()
        if not raw:
            os._exit(0)  # no request: the worker is recycling or closing this child
        req = json.loads(raw)
        os.closerange(3, st_w)
        os.closerange(st_w + 1, 65536)
        mem = vm + int(req["memory_mb"]) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        cpu = math.ceil(float(req["timeout_s"])) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        sys.setrecursionlimit(3000)
        sys.addaudithook(_audit)
    except BaseException as e:
        with contextlib.suppress(BaseException):
            os.write(st_w, json.dumps({"ok": False, "error": "setup: " + _describe(e)}).encode())
        os._exit(71)
    status = {"ok": True}
    code = 0
    try:
        exec(
            compile(req["code"], "<step>", "exec"),
            {"__name__": "__main__", "__builtins__": builtins},
        )
    except BaseException as e:  # SystemExit and KeyboardInterrupt are failures of a step too
        status, code = {"ok": False, "error": _describe(e)}, 1
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    # Close everything before the (slow) exit of a large process, so the worker can answer
    # as soon as the status arrives and reap this process after its reply.
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            os.close(fd)
    with contextlib.suppress(BaseException):
        os.write(st_w, json.dumps(status).encode()[:_STATUS_CAP])
        os.close(st_w)
    os._exit(code)


def _sweep():
    """As PID 1 of a PID namespace (in the jail), kill every other process in it; reap all."""
    if os.getpid() == 1:  # only ever inside a PID namespace of our own
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break


def _is_utf8(data):
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _remove(path):
    """Delete a directory this worker created, even if the step chmod-ed things inside it."""

    def retry(fn, p, _exc):
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
                shutil.rmtree(p, ignore_errors=True)
            else:
                fn(p)

    shutil.rmtree(path, onerror=retry)


def _wipe(scratch):
    """Empty the scratch directory (the step runs as this worker's uid, so it could write there
    and chmod it): the next execution finds nothing of this one, and all its space."""
    with contextlib.suppress(OSError):
        os.chmod(scratch, 0o700)
    with contextlib.suppress(OSError):
        for entry in os.scandir(scratch):
            if entry.is_dir(follow_symlinks=False):
                _remove(entry.path)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _result(ok=False, stdout="", stderr="", error=None, timed_out=False, killed=None, elapsed=0.0):
    return {
        "ok": ok,
        "stdout": stdout,
        "stderr": stderr,
        "error": error,
        "timed_out": timed_out,
        "killed": killed,
        "elapsed_s": elapsed,
    }


class _Zygote:
    """A child forked ahead of time, waiting for its request: the fork (and the exit of the
    previous child) happen while the worker is idle, not while a caller waits."""

    def __init__(self, scratch, keep):
        self.scratch = scratch
        self.run_dir = tempfile.mkdtemp(prefix="run-", dir=scratch)
        req_r, self.req_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        self.st_r, st_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            for fd in (self.req_w, self.out_r, self.err_r, self.st_r, *keep):
                os.close(fd)
            _child(self.run_dir, req_r, out_w, err_w, st_w)
        for fd in (req_r, out_w, err_w, st_w):
            os.close(fd)
        self.pidfd = os.pidfd_open(self.pid)

    def run(self, req):
        """Hand the request over, then collect output until exit, the deadline or the cap."""
        timeout = float(req["timeout_s"])
        cap = int(req["output_bytes"])
        t0 = time.monotonic()
        with contextlib.suppress(OSError):
            os.write(self.req_w, json.dumps(req).encode())
        os.close(self.req_w)
        self.req_w = None
        out_r, err_r, st_r = self.out_r, self.err_r, self.st_r
        bufs = {out_r: bytearray(), err_r: bytearray(), st_r: bytearray()}
        poller = select.poll()
        for fd in (out_r, err_r, st_r, self.pidfd):
            poller.register(fd, select.POLLIN)
        open_fds = {out_r, err_r, st_r}
        timed_out, killed, exited = False, None, False
        deadline = t0 + timeout
        # Until every pipe is closed, and then until it exits unless it has reported: a
        # finished child is reaped after the reply, its exit costs the caller nothing.
        while not killed and (open_fds or (not exited and not bufs[st_r])):
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            if exited:
                left = min(left, 0.05)  # grandchildren may hold the pipes open: don't wait
            events = poller.poll(left * 1000)
            if not events and exited:
                break
            for fd, _ in events:
                if fd == self.pidfd:
                    exited = True
                    poller.unregister(fd)
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    continue
                if fd == st_r:
                    bufs[st_r] += chunk[: max(0, _STATUS_CAP - len(bufs[st_r]))]
                    continue
                bufs[fd] += chunk
                if len(bufs[out_r]) + len(bufs[err_r]) > cap:
                    killed = "output"
                    break
        # Kill its process group while the unreaped child still pins the group id; the
        # sweep and the reaping follow the reply.
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGKILL)
        elapsed = time.monotonic() - t0
        try:
            reported = json.loads(bytes(bufs[st_r]).decode("utf-8", "replace"))
        except ValueError:
            reported = None
        status = None
        if not isinstance(reported, dict):  # it died without a word: its exit status says how
            reported = None
            with contextlib.suppress(ChildProcessError):
                status = os.waitpid(self.pid, 0)[1]
        return _verdict(
            bufs[out_r], bufs[err_r], reported, status, timeout, cap, timed_out, killed, elapsed
        )

    def finish(self):
        """Kill whatever the run left, reap it, empty the scratch directory."""
        if self.req_w is not None:  # never used: let it exit on an empty request
            os.close(self.req_w)
        _sweep()
        for fd in (self.out_r, self.err_r, self.st_r, self.pidfd):
            os.close(fd)
        _wipe(self.scratch)


def _verdict(out, err, reported, status, timeout, cap, timed_out, killed, elapsed):
    raw = bytes(out[:cap])
    res = _result(
        stdout=raw.decode("utf-8", "replace"),
        stderr=bytes(err[-4096:]).decode("utf-8", "replace"),
        timed_out=timed_out,
        killed=killed,
        elapsed=elapsed,
    )
    if timed_out:
        res["error"] = f"timed out after {timeout:g}s"
        return res
    if killed:
        res["error"] = f"output over {cap} bytes"
        return res
    if reported is not None:
        res["ok"] = bool(reported.get("ok"))
        res["error"] = None if res["ok"] else str(reported.get("error") or "failed")
        if res["ok"] and not _is_utf8(raw):  # bytes that are not text never reach a prompt
            res["ok"], res["error"] = False, "output is not valid UTF-8"
        if res["error"] and res["error"].startswith("MemoryError"):
            res["killed"] = "memory"
        return res
    if status is not None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        why = {"SIGXCPU": " (CPU time limit)", "SIGSEGV": " (segmentation fault)"}.get(name, "")
        res["error"], res["killed"] = f"killed by signal {name}{why}", "signal"
    else:
        code = os.WEXITSTATUS(status) if status is not None else "?"
        res["error"] = f"exited with status {code} before finishing"
    return res


def _warm_up():
    """Touch what steps commonly use, so every forked child starts with it loaded and cached."""
    import numpy
    import sympy

    x, y = sympy.symbols("x y")
    sympy.factor(x**2 - 1)
    sympy.solve([x + y - 3, x - y - 1], [x, y])
    sympy.solve(x**2 - 5 * x + 6, x)
    sympy.simplify(sympy.sin(x) ** 2 + sympy.cos(x) ** 2)
    sympy.expand((x + 1) ** 3)
    sympy.integrate(x**2, (x, 0, 1))
    sympy.diff(sympy.sin(x), x)
    sympy.limit(sympy.sin(x) / x, x, 0)
    sympy.Matrix([[1, 2], [3, 4]]).det()
    sympy.nsimplify(0.5)
    sympy.N(sympy.pi, 20)
    sympy.sqrt(8) + sympy.Rational(1, 3)
    sympy.isprime(97)
    sympy.factorint(360)
    sympy.binomial(10, 3)
    sympy.latex(x**2 / 2)
    numpy.linalg.solve(numpy.eye(2), numpy.ones(2))


def main():
    own_scratch = len(sys.argv) < 2
    scratch = tempfile.mkdtemp(prefix="rstar-sandbox-") if own_scratch else sys.argv[1]
    chan_in = os.fdopen(os.dup(0), "rb", buffering=0)
    chan_out = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    t0 = time.monotonic()
    loaded = []
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            __import__(name)
            loaded.append(name)
    with contextlib.suppress(Exception):
        _warm_up()
    gc.collect()
    gc.freeze()  # the children's collector leaves these objects (and their pages) alone
    with contextlib.suppress(Exception):  # /proc/<worker>/* unreadable to the children
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    os.dup2(devnull, 2)
    keep = (chan_in.fileno(), chan_out.fileno())
    ready = {
        "ready": True,
        "pid": os.getpid(),
        "uid": os.getuid(),
        "preloaded": loaded,
        "startup_s": time.monotonic() - t0,
    }
    chan_out.write(json.dumps(ready).encode() + b"\n")
    buf = b""
    zygote = _Zygote(scratch, keep)
    try:
        while True:
            while b"\n" not in buf:
                chunk = chan_in.read(1 << 20)
                if not chunk:
                    return
                buf += chunk
            line, buf = buf.split(b"\n", 1)
            try:
                res = zygote.run(json.loads(line))
            except Exception as e:  # a bug here must not take the worker down silently
                res = _result(error="worker: " + _describe(e), killed="sandbox")
            chan_out.write(json.dumps(res).encode() + b"\n")
            zygote.finish()
            zygote = _Zygote(scratch, keep)
    finally:
        zygote.finish()
        if own_scratch:
            _remove(scratch)


if __name__ == "__main__":
    main()
