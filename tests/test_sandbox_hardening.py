"""The sandbox's hardening on real nsjail: the syscall policy (each denied family fails with
EPERM, the i386 entry is killed), no channel between executions (files beside the run, a
filled scratch space), raw libc fork/execve past the audit hook staying inside the jail, and
cgroup limits where the host offers them. After every hostile step the pool serves a benign
one; realistic math steps keep working under the policy."""

import json
import logging
import platform
from pathlib import Path

import pytest

from sandbox import SandboxSettings, cgroups, create_sandbox
from sandbox.nsjail import jail_limits
from search.protocols import ExecLimits
from tests.support.jail import jailed_processes, parent_of

# Only the tests that make raw system calls by number (or enter the kernel through x86's int 0x80)
# are tied to the architecture; the rest run wherever nsjail does.
x86_64_only = pytest.mark.skipif(
    platform.machine() != "x86_64", reason="the raw system call numbers here are x86_64's"
)
LIMITS = ExecLimits(timeout_s=3.0, memory_mb=512, output_bytes=64 * 1024)
EPERM = "Operation not permitted"


def raw(nr: int, *args: object) -> str:
    """A step that makes one system call through libc and raises its errno if it fails."""
    return (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"if libc.syscall({', '.join(map(repr, (nr, *args)))}) == -1:\n"
        "    e = ctypes.get_errno()\n"
        "    raise OSError(e, os.strerror(e))\n"
    )


# Each would succeed, or fail for another reason (EINVAL, EFAULT, ENOKEY), without the policy.
DENIED = {
    "unshare(CLONE_NEWUSER)": raw(272, 0x10000000),
    "unshare(CLONE_NEWUSER | CLONE_NEWNS)": raw(272, 0x10020000),
    "clone(CLONE_NEWUSER)": (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "r = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)\n"
        "if r == 0:\n    os._exit(0)\n"
        "if r == -1:\n    e = ctypes.get_errno()\n    raise OSError(e, os.strerror(e))\n"
    ),
    "setns": (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "fd = os.open('/proc/self/ns/uts', os.O_RDONLY)\n"
        "if libc.syscall(308, fd, 0) == -1:\n"
        "    e = ctypes.get_errno()\n    raise OSError(e, os.strerror(e))\n"
    ),
    "ptrace(PTRACE_TRACEME)": raw(101, 0, 0, 0, 0),
    "process_vm_readv": raw(310, 1, 0, 0, 0, 0, 0),
    "keyctl": raw(250, 0, -3, 1, 0, 0),
    "add_key": raw(248, b"user", b"k", b"v", 1, -2),
    "request_key": raw(249, b"user", b"k", 0, 0),
    "bpf": raw(321, 5, 0, 0),
    "userfaultfd": raw(323, 0),
    "perf_event_open": raw(298, 0, 0, -1, -1, 0),
    "io_uring_setup": raw(425, 1, 0),
    "mount a tmpfs": raw(165, b"none", b"/sandbox", b"tmpfs", 0, 0),
    "umount2": raw(166, b"/sandbox", 0),
    "pivot_root": raw(155, b".", b"."),
    "kexec_load": raw(246, 0, 0, 0, 0),
    "finit_module": raw(313, 0, b"", 0),
    "personality": raw(135, 0xFFFFFFFF),
    "System V shared memory": raw(29, 0, 4096, 0o1600),
    "System V message queue": raw(68, 1234, 0o1600),
    "System V semaphores": raw(64, 1234, 1, 0o1600),
    "POSIX message queue": raw(240, b"q", 0o102, 0o600, 0),
    "an internet socket": "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM)\n",
}


def serves(pool) -> None:
    ok = pool.run_sync("print(6 * 7)\n", LIMITS)
    assert ok.ok and ok.stdout == "42\n", ok


@pytest.fixture(scope="module")
def one_worker():
    """One worker, so consecutive executions surely share it."""
    pool = create_sandbox(SandboxSettings(backend="nsjail", workers=1, base_uid=61500))
    with pool:
        yield pool


@pytest.mark.parametrize(
    "name", [n if n == "an internet socket" else pytest.param(n, marks=x86_64_only) for n in DENIED]
)
def test_each_denied_syscall_family_fails_with_eperm(sandbox, name):
    r = sandbox.run_sync(DENIED[name], LIMITS)
    assert not r.ok and EPERM in (r.error or ""), r
    assert not r.timed_out and r.killed is None
    serves(sandbox)


def test_clone3_answers_enosys_and_threads_still_start(sandbox):  # clone3 is 435 everywhere
    r = sandbox.run_sync(raw(435, 0, 0), LIMITS)
    assert not r.ok and "Function not implemented" in r.error, r
    r = sandbox.run_sync(
        "import threading\nout = []\nt = threading.Thread(target=lambda: out.append(7))\n"
        "t.start()\nt.join()\nprint(out)\n",
        LIMITS,
    )
    assert r.ok and r.stdout == "[7]\n", r


@x86_64_only
def test_the_i386_system_call_entry_is_killed(sandbox):
    """`int 0x80` numbers syscalls differently (310 is unshare there): kafel kills the caller."""
    code = (
        "import ctypes, mmap\n"
        "m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "m.write(bytes.fromhex('53b836010000bb00000010cd805bc3'))  # unshare(NEWUSER), int 0x80\n"
        "f = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))\n"
        "print(f())\n"
    )
    r = sandbox.run_sync(code, LIMITS)
    assert not r.ok and r.killed == "signal" and "SIGSYS" in r.error, r
    serves(sandbox)


@x86_64_only
def test_raw_libc_fork_and_execve_past_the_audit_hook_stay_in_the_jail(sandbox):
    probe = (
        "import ctypes, os; l = ctypes.CDLL(None, use_errno=True); "
        "print('unshare', l.syscall(272, 0x10000000), ctypes.get_errno(), os.getppid(), "
        "flush=True)"
    )
    code = (
        "import ctypes, os, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "pid = libc.fork()\n"
        "if pid == 0:\n"
        "    exe = sys.executable.encode()\n"
        f"    argv = (ctypes.c_char_p * 4)(exe, b'-c', {probe!r}.encode(), None)\n"
        "    libc.execv(exe, argv)\n"
        "    os._exit(127)\n"
        "os.waitpid(pid, 0)\n"
        "print('parent done')\n"
    )
    r = sandbox.run_sync(code, LIMITS)
    assert r.ok, r
    lines = r.stdout.splitlines()
    assert lines[-1] == "parent done"
    # the new program runs in the same jail, under the same policy: unshare still fails (EPERM)
    assert lines[0].startswith("unshare -1 1 "), r.stdout
    serves(sandbox)


def test_nothing_a_step_writes_survives_into_the_next_execution(one_worker):
    plant = (
        "import os\n"
        "open('/sandbox/left-behind', 'w').write('secret')\n"
        "os.mkdir('/sandbox/d')\nopen('/sandbox/d/f', 'w').write('x')\nos.chmod('/sandbox/d', 0)\n"
        "open('mine', 'w').write('x')\n"
        "os.chmod('/sandbox', 0o777)\n"
        "print(sorted(os.listdir('/sandbox')))\n"
    )
    look = (
        "import json, os\n"
        "print(json.dumps([sorted(os.listdir('/sandbox')), os.listdir('.'),"
        " os.path.basename(os.getcwd()), oct(os.stat('/sandbox').st_mode & 0o777)]))\n"
    )
    a = one_worker.run_sync(plant, LIMITS)
    assert a.ok and "left-behind" in a.stdout, a
    for _ in range(2):
        b = one_worker.run_sync(look, LIMITS)
        assert b.ok, b
        names, here, cwd, mode = json.loads(b.stdout)
        assert names == [cwd] and here == [] and mode == "0o700", b.stdout


def test_filling_the_scratch_space_does_not_starve_the_next_execution(one_worker):
    fill = (
        "i = 0\n"
        "try:\n"
        "    while True:\n"
        "        open(f'/sandbox/fill{i}', 'wb').write(b'x' * 2**20)\n"
        "        i += 1\n"
        "except OSError as e:\n"
        "    print(i, e.errno)\n"
    )
    r = one_worker.run_sync(fill, LIMITS)
    assert r.ok and r.stdout.split()[1] == "28", r  # ENOSPC: the tmpfs is full
    after = one_worker.run_sync("open('big', 'wb').write(b'x' * 8 * 2**20)\nprint('ok')\n", LIMITS)
    assert after.ok and after.stdout == "ok\n", after


def test_realistic_steps_work_under_the_policy(sandbox):
    steps = {
        "import sympy as sp\nx = sp.symbols('x')\nprint(sp.solve(x**2 - 5*x + 6, x))\n": "[2, 3]",
        "import sympy as sp\nx = sp.symbols('x')\nprint(sp.integrate(x**2, (x, 0, 3)))\n": "9",
        "import sympy as sp\nprint(sp.Matrix([[1, 2], [3, 4]]).inv())\n": (
            "Matrix([[-2, 1], [3/2, -1/2]])"
        ),
        "import sympy as sp\nprint(sp.factorint(360), sp.isprime(97))\n": (
            "{2: 3, 3: 2, 5: 1} True"
        ),
        "import numpy as np\nprint(np.linalg.solve([[2, 1], [1, 3]], [3, 5]).round(6))\n": (
            "[0.8 1.4]"
        ),
        "import numpy as np\nprint(np.random.default_rng(0).integers(0, 10, 3).tolist())\n": (
            "[8, 6, 5]"
        ),
        "from fractions import Fraction\nprint(Fraction(3, 4) + Fraction(1, 6))\n": "11/12",
        "from decimal import Decimal, getcontext\ngetcontext().prec = 30\n"
        "print(Decimal(2).sqrt())\n": "1.41421356237309504880168872421",
        "import itertools, math\n"
        "print(sum(1 for c in itertools.combinations(range(10), 3)), math.comb(10, 3))\n": (
            "120 120"
        ),
        "import statistics\nprint(statistics.median([3, 1, 4, 1, 5]))\n": "3",
        "import datetime\nprint((datetime.date(2024, 3, 1) - datetime.date(2024, 2, 1)).days)\n": (
            "29"
        ),
        "import re, collections\n"
        "print(collections.Counter(re.findall('[a-z]', 'banana')).most_common(1))\n": (
            "[('a', 3)]"
        ),
        "open('t.txt', 'w').write('12')\nprint(int(open('t.txt').read()) * 2)\n": "24",
        "import random\nrandom.seed(1)\nprint(random.randint(1, 100))\n": "18",
    }
    for code, expected in steps.items():
        r = sandbox.run_sync(code, LIMITS)
        assert r.ok and r.stdout.strip() == expected, (code, r)


def test_the_startup_line_says_which_limits_are_in_force(caplog):
    caplog.set_level(logging.INFO, logger="sandbox.nsjail")
    create_sandbox(SandboxSettings(backend="nsjail", workers=1))  # not started: no jail
    line = next(r.getMessage() for r in caplog.records if r.name == "sandbox.nsjail")
    assert "seccomp policy on (" in line and "rlimits per jail" in line
    assert "cgroup v2 limits" in line or "cgroup v1 limits" in line or "cgroup limits off (" in line
    caplog.clear()
    create_sandbox(SandboxSettings(backend="nsjail", workers=1, seccomp=False, cgroups="off"))
    line = next(r.getMessage() for r in caplog.records if r.name == "sandbox.nsjail")
    assert "seccomp policy OFF" in line and "cgroup limits off (RSTAR_SANDBOX_CGROUPS=off)" in line


# --------------------------------------------------------------------------- cgroups

CGROUP_SETTINGS = {"backend": "nsjail", "workers": 1, "memory_mb": 2048, "jail_memory_mb": 256}


@pytest.fixture(scope="module")
def limited():
    """A pool whose jails get 256 MiB of cgroup memory, under a 2 GiB address-space rlimit."""
    s = SandboxSettings(**CGROUP_SETTINGS, base_uid=61600)
    plan = cgroups.plan(s.cgroups, jail_limits(s))
    if plan.mode == "off":
        pytest.skip(f"no cgroup limits on this host: {plan.reason}")
    pool = create_sandbox(s)
    with pool:
        yield pool, plan, s


def _jailed_worker(pool, base_uid: int) -> int:
    (pid,) = [p for p in jailed_processes(base_uid, 1) if parent_of(p) in pool.worker_pids()]
    return pid


def test_each_jail_runs_in_its_own_limited_cgroup(limited):
    pool, plan, s = limited
    pid = _jailed_worker(pool, 61600)
    own = Path(f"/proc/{pid}/cgroup").read_text()
    assert f"rstar-sandbox/NSJAIL.{pid}\n" in own, own  # nsjail names a jail's cgroup by its pid
    memory = Path(plan.parents["memory"]) / f"NSJAIL.{pid}"
    pids = Path(plan.parents["pids"]) / f"NSJAIL.{pid}"
    limit = "memory.limit_in_bytes" if plan.mode == "v1" else "memory.max"
    assert int((memory / limit).read_text()) == 256 * 2**20
    assert int((pids / "pids.max").read_text()) == s.max_processes


def test_a_step_past_the_jails_memory_is_killed_and_the_pool_serves_on(limited):
    pool, _, _ = limited
    # 600 MB touched: under the 2 GiB address-space rlimit, over the cgroup's 256 MiB
    r = pool.run_sync(
        "x = b'x' * (600 * 2**20)\nprint(len(x))\n",
        ExecLimits(timeout_s=20.0, memory_mb=2048, output_bytes=4096),
    )
    assert not r.ok and not r.timed_out, r
    for _ in range(20):  # the OOM killer may have taken the worker itself: it is replaced
        ok = pool.run_sync("print(6 * 7)\n", LIMITS)
        if ok.ok:
            break
    assert ok.ok and ok.stdout == "42\n", ok


def test_a_busy_step_gets_only_its_jails_cpu_share_and_still_finishes():
    """RSTAR_SANDBOX_JAIL_CPUS: the jail's cgroup holds it to a share of one CPU (here 0.2), so a
    step that spins for 2 s of wall time runs throttled, not killed, and the kernel counts it at
    most its share of CPU time (plus a scheduling period's slack)."""
    s = SandboxSettings(backend="nsjail", workers=1, jail_cpus=0.2, base_uid=61700)
    plan = cgroups.plan(s.cgroups, jail_limits(s))
    if "cpu" not in plan.parents:
        pytest.skip(f"no cgroup cpu controller on this host ({plan.mode}: {plan.reason})")
    pool = create_sandbox(s)
    with pool:
        cpu = Path(plan.parents["cpu"]) / f"NSJAIL.{_jailed_worker(pool, 61700)}"
        if plan.mode == "v1":
            quota = int((cpu / "cpu.cfs_quota_us").read_text())
            period = int((cpu / "cpu.cfs_period_us").read_text())
        else:
            quota, period = map(int, (cpu / "cpu.max").read_text().split())
        assert quota / period == pytest.approx(0.2)
        spin = (
            "import time\nt0 = time.monotonic()\n"
            "while time.monotonic() - t0 < 2.0:\n    pass\n"
            "print(time.process_time())\n"
        )
        r = pool.run_sync(spin, ExecLimits(timeout_s=20.0, memory_mb=512, output_bytes=4096))
        assert r.ok, r
        assert float(r.stdout) <= 0.2 * 2.0 + 0.3, r.stdout  # unthrottled: up to 2 s
