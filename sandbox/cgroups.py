"""Per-jail cgroup limits (memory with tmpfs and page cache, processes, CPU) where the host
offers them, and which ones are in force.

nsjail makes one cgroup per jail (`NSJAIL.<pid>`) below a parent that must exist and, on
cgroup v2, delegate the controllers; making that parent is the one step that needs the host's
cgroup tree, so it happens here, once, as root. The parent sits below the server's own cgroup,
so the jails count against the server's (the pod's) limits too. Where neither hierarchy can be
used (not root, a read-only /sys/fs/cgroup, controllers missing) the jail's rlimits stay the
only limits, and the reason is said in the startup log line.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

PARENT = "rstar-sandbox"
SERVER_LEAF = "rstar-server"
CONTROLLERS = ("memory", "pids", "cpu")


@dataclass(frozen=True)
class JailLimits:
    memory_mb: int
    pids: int
    cpus: float


@dataclass(frozen=True)
class CgroupPlan:
    """The nsjail flags that put each jail in a limited cgroup, or none and why."""

    mode: Literal["v2", "v1", "off"]
    argv: list[str] = field(default_factory=list)
    parents: dict[str, str] = field(default_factory=dict)  # controller -> parent cgroup dir
    reason: str = ""

    def describe(self, limits: JailLimits) -> str:
        if self.mode == "off":
            return f"cgroup limits off ({self.reason}): the rlimits are the only limits"
        return (
            f"cgroup {self.mode} limits per worker: memory {limits.memory_mb} MiB (tmpfs and "
            f"page cache included), pids {limits.pids}, cpu {limits.cpus:g}"
            + (f" ({self.reason})" if self.reason else "")
        )


def _mounts(fstype: str) -> list[tuple[str, str, set[str]]]:
    """(mount point, root inside the hierarchy, super options) of each mount of `fstype`."""
    out = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            parts, tail = pre.split(), post.split()
            if len(parts) >= 5 and tail and tail[0] == fstype:
                opts = set(tail[2].split(",")) if len(tail) > 2 else set()
                out.append((parts[4], parts[3], opts))
    return out


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and under "" its v2 path."""
    out: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else [""]:
                out[c.removeprefix("name=")] = path
    return out


def _below(mount: str, root: str, path: str) -> Path | None:
    """Where cgroup `path` appears under a mount of the hierarchy's `root`."""
    if not (path == root or path.startswith(root.rstrip("/") + "/")):
        return None
    return Path(mount) / path[len(root) :].lstrip("/")


def _write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _plan_v2(limits: JailLimits) -> CgroupPlan:
    own = _own_cgroups().get("")
    for mount, root, _ in _mounts("cgroup2"):
        base = _below(mount, root, own) if own is not None else None
        if base is None or not (base / "cgroup.controllers").exists():
            continue
        available = set((base / "cgroup.controllers").read_text().split())
        wanted = [c for c in CONTROLLERS if c in available]
        if not {"memory", "pids"} <= available:
            return CgroupPlan(
                "off",
                reason=f"cgroup v2 at {base} offers {sorted(available)}, without memory and pids",
            )
        enable = " ".join(f"+{c}" for c in wanted)
        try:
            try:
                _write(base / "cgroup.subtree_control", enable)
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
                # cgroup v2 lets no cgroup both hold processes and delegate controllers: move
                # this cgroup's processes (the server) into a leaf of their own, as nsjail does.
                leaf = base / SERVER_LEAF
                leaf.mkdir(exist_ok=True)
                for pid in (base / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        _write(leaf / "cgroup.procs", pid)
                _write(base / "cgroup.subtree_control", enable)
            parent = base / PARENT
            parent.mkdir(exist_ok=True)
            _write(parent / "cgroup.subtree_control", enable)
        except OSError as e:
            return CgroupPlan("off", reason=f"cannot delegate cgroup v2 controllers at {base}: {e}")
        argv = ["--use_cgroupv2", "--cgroupv2_mount", str(parent), *_limit_flags(limits, wanted)]
        return CgroupPlan("v2", argv, {c: str(parent) for c in wanted})
    return CgroupPlan("off", reason="no cgroup v2 hierarchy holds this process")


def _plan_v1(limits: JailLimits) -> CgroupPlan:
    own = _own_cgroups()
    flags = {"memory": "mem", "pids": "pids", "cpu": "cpu"}
    argv: list[str] = []
    parents: dict[str, str] = {}
    for mount, root, opts in _mounts("cgroup"):
        for c in CONTROLLERS:
            if c not in opts or c in parents or c not in own:
                continue
            base = _below(mount, root, own[c])
            if base is None:
                continue
            parent = base / PARENT
            try:
                parent.mkdir(exist_ok=True)
            except OSError:
                continue
            parents[c] = str(parent)
            argv += [
                f"--cgroup_{flags[c]}_mount",
                mount,
                f"--cgroup_{flags[c]}_parent",
                str(parent.relative_to(mount)),
            ]
    if not {"memory", "pids"} <= set(parents):
        return CgroupPlan("off", reason="no writable cgroup v1 memory and pids hierarchies")
    wanted = [c for c in CONTROLLERS if c in parents]
    missing = [c for c in CONTROLLERS if c not in parents]
    return CgroupPlan(
        "v1",
        argv + _limit_flags(limits, wanted),
        parents,
        f"no {', '.join(missing)} controller" if missing else "",
    )


def _limit_flags(limits: JailLimits, controllers: list[str]) -> list[str]:
    argv: list[str] = []
    if "memory" in controllers:
        argv += ["--cgroup_mem_max", str(limits.memory_mb * 1024 * 1024)]
    if "pids" in controllers:
        argv += ["--cgroup_pids_max", str(limits.pids)]
    if "cpu" in controllers:
        argv += ["--cgroup_cpu_ms_per_sec", str(max(1, round(limits.cpus * 1000)))]
    return argv


def plan(mode: Literal["auto", "v2", "v1", "off"], limits: JailLimits) -> CgroupPlan:
    """The cgroup flags for every jail, preparing their parent cgroup (as root) on the way."""
    if mode == "off":
        return CgroupPlan("off", reason="RSTAR_SANDBOX_CGROUPS=off")
    if os.geteuid() != 0:
        return CgroupPlan("off", reason="not root: nsjail can only place jails in cgroups as root")
    tried = []
    for version, fn in (("v2", _plan_v2), ("v1", _plan_v1)):
        if mode in ("auto", version):
            p = fn(limits)
            if p.mode != "off":
                return p
            tried.append(p.reason)
    return CgroupPlan("off", reason="; ".join(tried))
