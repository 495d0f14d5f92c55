"""The host's view of the sandbox's jails: the processes running as a pool's users."""

from __future__ import annotations

from pathlib import Path

# The session's shared pool runs as its own users, not the default's (61000+): a server or a
# search on the same host (a round running beside the tests) keeps its jailed processes there.
SESSION_BASE_UID = 61900


def jailed_processes(base_uid: int, count: int) -> list[int]:
    """Pids of the processes whose uid is one of a pool's `count` users from `base_uid`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                uid = entry.stat().st_uid
            except FileNotFoundError:
                continue
            if base_uid <= uid < base_uid + count:
                pids.append(int(entry.name))
    return pids


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
