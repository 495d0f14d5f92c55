"""The nsjail sandbox: hostile code comes back as a failed step within its limit, the pool
keeps serving, and the host is left as it was. Real nsjail, real processes."""

import asyncio
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox import SandboxSettings, SandboxUnavailable, create_sandbox
from search.protocols import ExecLimits
from tests.support.jail import SESSION_BASE_UID, jailed_processes, parent_of

REPO = Path(__file__).resolve().parents[1]
LIMITS = ExecLimits(timeout_s=2.0, memory_mb=512, output_bytes=64 * 1024)

HOSTILE = {
    "infinite loop": ("while True:\n    pass\n", "timeout"),
    "sleep forever": ("import time\ntime.sleep(1e6)\n", "timeout"),
    "ignores SIGALRM and SIGTERM": (
        "import signal\n"
        "for s in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT):\n"
        "    signal.signal(s, signal.SIG_IGN)\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, range(1, 32))\n"
        "signal.alarm(1)\n"
        "while True:\n    pass\n",
        "timeout",
    ),
    "4 GB allocation": ("x = bytearray(4 * 1024**3)\n", "memory"),
    "ever-growing list": ("x = []\nwhile True:\n    x.append(' ' * 10**6)\n", "memory"),
    "fork bomb": ("import os\nwhile True:\n    os.fork()\n", "error"),
    "fork bomb through ctypes": (
        "import ctypes\nlibc = ctypes.CDLL(None)\nwhile True:\n    libc.fork()\n",
        "timeout",
    ),
    "os.system": ("import os\nos.system('echo pwned > /sandbox/x')\n", "error"),
    "subprocess": ("import subprocess\nsubprocess.run(['ls', '/'])\n", "error"),
    "socket to an outside address": (
        "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)\n",
        "error",
    ),
    "write to /": ("open('/pwned', 'w').write('x')\n", "error"),
    "write to /etc": ("open('/etc/pwned', 'w').write('x')\n", "error"),
    "write to the worker's own files": (
        "import sys, os\nopen(os.path.join(sys.prefix, 'pwned'), 'w').write('x')\n",
        "error",
    ),
    "write to the host's /tmp": ("open('/tmp/rstar-pwned', 'w').write('x')\n", "error"),
    "read host files": ("print(open('/etc/passwd').read())\n", "error"),
    "read the project's files": (
        f"print(open({str(REPO / 'pyproject.toml')!r}).read())\n",
        "error",
    ),
    "read root's home": ("print(open('/root/.bashrc').read())\n", "error"),
    "100 MB to stdout": ("import sys\nsys.stdout.write('x' * 100_000_000)\n", "output"),
    "100 MB to stderr": ("import sys\nsys.stderr.write('x' * 100_000_000)\n", "output"),
    "non-UTF-8 output": ("import sys\nsys.stdout.buffer.write(b'\\xff\\xfe\\x00 bad')\n", "error"),
    "deep recursion": ("def f(n):\n    return f(n + 1)\nf(0)\n", "error"),
    "deep recursion with no limit": (
        "import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return f(n + 1)\nf(0)\n",
        "failed",  # a segfault or the wall clock, whichever comes first
    ),
    "segfault": ("import ctypes\nctypes.string_at(0)\n", "signal"),
    "sys.exit": ("import sys\nsys.exit(0)\n", "error"),
    "os._exit": ("import os\nos._exit(0)\n", "error"),
    "raise BaseException": ("raise BaseException('bye')\n", "error"),
    "input()": ("x = input()\n", "error"),
    "sympy that never finishes": ("import sympy\nsympy.factorint(2**512 + 1)\n", "timeout"),
    "kill everything": ("import os, signal\nos.kill(-1, signal.SIGKILL)\n", "failed"),
    # PID 1 of a namespace ignores signals from inside it: harmless, so it may even succeed
    "kill the worker": ("import os, signal\nos.kill(1, signal.SIGKILL)\n", "either"),
}


def assert_only_workers_and_their_next_child(pool, base_uid: int) -> None:
    """Each worker forks its next child right after answering: give it a moment."""
    deadline = time.monotonic() + 5
    while True:
        try:
            jailed = jailed_processes(base_uid, pool.size)
            workers = [p for p in jailed if parent_of(p) in pool.worker_pids()]
            others = [p for p in jailed if p not in workers]
            assert len(workers) == pool.size
            assert sorted(parent_of(p) for p in others) == sorted(workers)
            return
        except (AssertionError, FileNotFoundError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def host_snapshot() -> dict:
    tmp = sorted(p.name for p in Path("/tmp").iterdir() if not p.name.startswith("pytest-"))
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True
    )
    return {"tmp": tmp, "root": sorted(os.listdir("/")), "repo": status.stdout}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_code_fails_within_its_limit(sandbox, name):
    code, kind = HOSTILE[name]
    t0 = time.monotonic()
    r = sandbox.run_sync(code, LIMITS)
    took = time.monotonic() - t0
    assert kind == "either" or not r.ok, r
    assert took < LIMITS.timeout_s + 2.0
    if kind == "timeout":
        assert r.timed_out
    elif kind in ("memory", "output", "signal"):
        assert r.killed == kind, r
    elif kind == "error":
        assert r.error and not r.timed_out and r.killed != "sandbox", r
    # the pool keeps serving
    ok = sandbox.run_sync("print(6 * 7)\n", LIMITS)
    assert ok.ok and ok.stdout == "42\n", ok


def test_errors_explain_themselves(sandbox):
    r = sandbox.run_sync("import os\nos.system('ls')\n", LIMITS)
    assert r.error.startswith("PermissionError: os.system is not allowed in a step (line 2)")
    r = sandbox.run_sync("open('/etc/passwd')\n", LIMITS)
    assert r.error.startswith("FileNotFoundError")
    r = sandbox.run_sync("x = bytearray(4 * 1024**3)\n", LIMITS)
    assert r.error.startswith("MemoryError")


def test_no_network_even_to_the_hosts_loopback(sandbox):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        r = sandbox.run_sync(
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n", LIMITS
        )
        # the policy refuses internet sockets (EPERM); without it, the jail's own empty network
        # namespace refuses the connection
        assert not r.ok and ("Operation not permitted" in r.error or "refused" in r.error), r
    finally:
        server.close()


def test_runs_do_not_see_each_other(sandbox):
    a = sandbox.run_sync(
        "open('note.txt', 'w').write('secret')\nimport os\nprint(os.getcwd())\n", LIMITS
    )
    assert a.ok
    for _ in range(4):  # whichever worker answers, the file is gone
        b = sandbox.run_sync("import os\nprint(sorted(os.listdir('.')))\n", LIMITS)
        assert b.ok and b.stdout == "[]\n"


def test_runs_as_an_unprivileged_user_in_its_own_pid_namespace(sandbox):
    r = sandbox.run_sync("import os\nprint(os.getuid(), os.getgid(), os.getppid())\n", LIMITS)
    uid, gid, ppid = map(int, r.stdout.split())
    assert uid != 0 and gid != 0 and ppid == 1


def test_math_libraries_are_preloaded(sandbox):
    r = sandbox.run_sync(
        "import sys\nprint('sympy' in sys.modules, 'numpy' in sys.modules)\n", LIMITS
    )
    assert r.stdout == "True True\n"
    r = sandbox.run_sync(
        "import sympy\nx = sympy.symbols('x')\nprint(sympy.solve(x**2 - 4, x))\n", LIMITS
    )
    assert r.ok and r.stdout == "[-2, 2]\n"


async def test_concurrent_runs_share_the_pool(sandbox):
    results = await asyncio.gather(*(sandbox.run(f"print({i} ** 2)\n", LIMITS) for i in range(12)))
    assert [r.stdout for r in results] == [f"{i**2}\n" for i in range(12)]


def test_host_is_unchanged_after_the_hostile_suite(sandbox):
    before = host_snapshot()
    for code, _ in HOSTILE.values():
        sandbox.run_sync(code, ExecLimits(timeout_s=1.0, memory_mb=512, output_bytes=64 * 1024))
    assert host_snapshot() == before
    assert not Path("/tmp/rstar-pwned").exists()
    # as the jails' users run only the warm workers and one pre-forked child each
    assert_only_workers_and_their_next_child(sandbox, SESSION_BASE_UID)


def test_a_dead_worker_is_replaced_and_the_caller_gets_an_error():
    pool = create_sandbox(SandboxSettings(backend="nsjail", workers=1, base_uid=61100))
    with pool:
        (pid,) = pool.worker_pids()
        os.killpg(pid, signal.SIGKILL)
        r = pool.run_sync("print(1)\n", LIMITS)
        assert not r.ok and r.killed == "sandbox" and "replaced" in r.error
        r = pool.run_sync("print(1)\n", LIMITS)
        assert r.ok and r.stdout == "1\n"
        assert pool.stats.workers_replaced == 1


def test_a_frozen_worker_is_replaced_within_the_deadline():
    pool = create_sandbox(SandboxSettings(backend="nsjail", workers=1, base_uid=61200))
    with pool:
        # the worker itself, inside its jail (its pre-forked child may be there too)
        (jailed,) = [p for p in jailed_processes(61200, 1) if parent_of(p) in pool.worker_pids()]
        os.kill(jailed, signal.SIGSTOP)
        t0 = time.monotonic()
        r = pool.run_sync("print(1)\n", ExecLimits(timeout_s=1.0))
        assert not r.ok and r.killed == "sandbox"
        assert time.monotonic() - t0 < 1.0 + 5.0
        assert pool.run_sync("print(2)\n").stdout == "2\n"


def test_closing_the_pool_leaves_no_process_behind():
    pool = create_sandbox(SandboxSettings(backend="nsjail", workers=2, base_uid=61300))
    with pool:
        pool.run_sync("print(1)\n")
        assert_only_workers_and_their_next_child(pool, 61300)
    deadline = time.monotonic() + 5
    while jailed_processes(61300, 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert jailed_processes(61300, 2) == []


def test_works_when_the_process_holds_more_than_1024_descriptors():
    """A busy server holds many sockets: the pool's pipes then get numbers above 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1200:
        pytest.skip(f"this process may open only {hard} files")
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        pool = create_sandbox(SandboxSettings(backend="nsjail", workers=1, base_uid=61400))
        with pool:
            assert pool.run_sync("print(6 * 7)\n", LIMITS).stdout == "42\n"
    finally:
        for fd in held:
            os.close(fd)


def test_unusable_nsjail_refuses_to_start_and_says_how_to_fix_it():
    pool = create_sandbox(SandboxSettings(backend="nsjail", workers=1, nsjail_path="/bin/false"))
    with pytest.raises(SandboxUnavailable, match="RSTAR_SANDBOX=local"):
        pool.start()


def test_nsjail_is_the_default_backend(monkeypatch):
    for var in ("RSTAR_SANDBOX", "RSTAR_SANDBOX_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    assert SandboxSettings().backend == "nsjail"
    monkeypatch.setenv("RSTAR_SANDBOX", "local")
    assert SandboxSettings().backend == "local"
    assert sys.platform == "linux"
