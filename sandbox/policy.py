"""The seccomp-bpf policy nsjail applies to every jailed process (kafel's policy language).

Namespaces stop a step from seeing the host; the filter shrinks the kernel it can reach. A
math step needs files, memory, pipes, fork and time; it never needs to make namespaces, trace
or read other processes, manage keys, load BPF programs or modules, mount anything, or share
memory through System V IPC or POSIX message queues — which, living in the jail's IPC
namespace, would outlast one execution and carry data into the next. Those calls fail with
EPERM (the step sees an ordinary `PermissionError` and fails cleanly; the worker serves the
next one). `clone3` answers ENOSYS, the way container runtimes filter it: its flags sit in
memory a filter cannot read, and glibc falls back to `clone`, whose flags it can. kafel's
program kills any process that makes a system call through another ABI (the i386 `int 0x80`
entry), so the rules cannot be bypassed by number.
"""

from __future__ import annotations

EPERM, ENOSYS = 1, 38

# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET, and CLONE_NEWTIME
NAMESPACE_FLAGS = 0x7E020000 | 0x80
AF_UNIX = 1

DENIED: dict[str, tuple[str, ...]] = {
    "namespaces": ("unshare", "setns"),
    "other processes": ("ptrace", "process_vm_readv", "process_vm_writev", "process_madvise",
                        "kcmp", "pidfd_getfd"),
    "kernel keys": ("keyctl", "add_key", "request_key"),
    "kernel attack surface": ("bpf", "userfaultfd", "perf_event_open", "io_uring_setup",
                              "io_uring_enter", "io_uring_register", "personality"),
    "mounts": ("mount", "umount", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
               "fsconfig", "fsmount", "fspick", "mount_setattr"),
    "kernel and modules": ("kexec_load", "kexec_file_load", "init_module", "finit_module",
                           "delete_module", "reboot", "swapon", "swapoff", "acct", "syslog",
                           "quotactl", "lookup_dcookie", "iopl", "ioperm", "vhangup"),
    "host identity and clocks": ("sethostname", "setdomainname", "settimeofday",
                                 "clock_settime", "clock_adjtime", "adjtimex"),
    "file handles": ("open_by_handle_at", "name_to_handle_at", "fanotify_init"),
    "IPC that outlives a process": ("shmget", "shmat", "shmdt", "shmctl", "msgget", "msgsnd",
                                    "msgrcv", "msgctl", "semget", "semop", "semtimedop",
                                    "semctl", "mq_open", "mq_unlink", "mq_timedsend",
                                    "mq_timedreceive", "mq_notify", "mq_getsetattr"),
}  # fmt: skip
"""Denied outright, by family (the README's sandbox section lists the same)."""

DENIED_COUNT = sum(len(f) for f in DENIED.values()) + 2  # and clone with namespace flags, clone3


def kafel_policy() -> str:
    """The policy as nsjail's `--seccomp_string` takes it: everything else is allowed."""
    names = ", ".join(n for family in DENIED.values() for n in family)
    return (
        f"#define NAMESPACE_FLAGS {NAMESPACE_FLAGS:#x}\n"
        f"#define AF_UNIX {AF_UNIX}\n"
        "POLICY rstar_step {\n"
        f"  ERRNO({EPERM}) {{ {names},\n"
        "    clone { (clone_flags & NAMESPACE_FLAGS) != 0 },\n"
        "    socket { family != AF_UNIX } },\n"
        f"  ERRNO({ENOSYS}) {{ clone3 }}\n"
        "}\n"
        "USE rstar_step DEFAULT ALLOW\n"
    )
