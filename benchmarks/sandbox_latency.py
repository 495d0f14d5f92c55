"""Sandbox cost per step: warm nsjail pool vs a fresh nsjail + Python per step vs in-process exec.

Prints figures; it is not a test. For each kind of step, every backend runs the same steps; the
warm pool and the fresh jails run with as many steps in flight as the machine has cores.

    python -m benchmarks.sandbox_latency [--steps 200] [--fresh-steps 20]
    python -m benchmarks.sandbox_latency --hardening [--steps 400]

`--hardening` measures what the syscall policy and the cgroup limits cost instead: two warm
pools side by side, one without them (RSTAR_SANDBOX_SECCOMP=false, RSTAR_SANDBOX_CGROUPS=off)
and one as configured by default, their steps interleaved in rounds so that the machine's noise
falls on both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from sandbox import SandboxSettings, create_sandbox
from sandbox.nsjail import jail_argv

STEPS = {
    "trivial": "x = 1 + 1\nprint(x)\n",
    "sympy": "import sympy\nx = sympy.symbols('x')\nprint(sympy.factor(x**2 - 1))\n",
}


def in_process(code: str) -> None:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, "<step>", "exec"), {"__name__": "__main__"})


def fresh_jail(code: str, settings: SandboxSettings) -> None:
    argv = jail_argv(0, settings)
    argv = [*argv[: argv.index("--") + 1], sys.executable, "-I", "-c", code]
    subprocess.run(argv, capture_output=True, check=True, timeout=60)


def measure(fn, code: str, n: int, parallel: int, gap_s: float = 0.0) -> dict[str, float]:
    def one(_: int) -> float:
        time.sleep(gap_s)  # idle time before the step (not counted in its latency)
        t = time.perf_counter()
        fn(code)
        return time.perf_counter() - t

    t0 = time.perf_counter()
    if parallel == 1:
        lat = [one(i) for i in range(n)]
    else:
        with ThreadPoolExecutor(parallel) as ex:
            lat = list(ex.map(one, range(n)))
    wall = time.perf_counter() - t0 - n * gap_s / parallel
    lat.sort()
    return {
        "p50_ms": 1000 * statistics.median(lat),
        "p95_ms": 1000 * lat[min(len(lat) - 1, int(0.95 * len(lat)))],
        "steps_per_s": n / wall if not gap_s else float("nan"),
    }


def compare_hardening(steps: int, cores: int, rounds: int = 4) -> None:
    variants = {
        "without policy and cgroups": SandboxSettings(
            backend="nsjail", workers=cores, seccomp=False, cgroups="off", base_uid=62000
        ),
        "with policy and cgroups": SandboxSettings(backend="nsjail", workers=cores, base_uid=62100),
    }
    pools = {name: create_sandbox(s) for name, s in variants.items()}
    for pool in pools.values():
        pool.start()
    results: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    try:
        for r in range(rounds):
            for step, code in STEPS.items():
                for name, pool in pools.items():

                    def warm(c: str, pool=pool) -> None:
                        res = pool.run_sync(c)
                        assert res.ok, res

                    for par in (1, cores):
                        m = measure(warm, code, max(1, steps // rounds), par)
                        results.setdefault((step, name, par), []).append(m)
            print(f"  round {r + 1}/{rounds} done", flush=True)
    finally:
        for pool in pools.values():
            pool.close()
    print(
        f"\nHardening cost per step ({cores} cores, {steps} steps each, {rounds} interleaved "
        "rounds; p50 is the median of the rounds' medians):"
    )
    print(f"{'step':8} {'pool':28} {'in flight':>9} {'p50 ms':>9} {'p95 ms':>9} {'steps/s':>9}")
    for (step, name, par), ms in results.items():
        p50 = statistics.median(m["p50_ms"] for m in ms)
        p95 = statistics.median(m["p95_ms"] for m in ms)
        rate = statistics.median(m["steps_per_s"] for m in ms)
        print(f"{step:8} {name:28} {par:9} {p50:9.2f} {p95:9.2f} {rate:9.1f}")
    names = list(variants)
    for step in STEPS:
        for par in (1, cores):
            a, b = (statistics.median(m["p50_ms"] for m in results[(step, n, par)]) for n in names)
            print(
                f"{step} with {par} in flight: the policy and cgroups add {b - a:+.2f} ms p50 "
                "per step (target <= 1 ms)"
            )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=200, help="steps per backend (warm pool, exec)")
    ap.add_argument("--fresh-steps", type=int, default=20, help="steps for fresh jails (slow)")
    ap.add_argument(
        "--hardening", action="store_true", help="the policy's and cgroups' cost, side by side"
    )
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    if args.hardening:
        compare_hardening(args.steps, cores)
        return
    settings = SandboxSettings(backend="nsjail", workers=cores)
    pool = create_sandbox(settings)
    t = time.perf_counter()
    pool.start()
    print(
        f"warm pool of {cores} nsjail workers started in {time.perf_counter() - t:.2f}s", flush=True
    )

    def warm(code: str) -> None:
        r = pool.run_sync(code)
        assert r.ok, r

    rows = []
    try:
        for step, code in STEPS.items():
            fresh = lambda c: fresh_jail(c, settings)  # noqa: E731
            for name, fn, n, par, gap in (
                ("in-process exec (unsafe)", in_process, args.steps, 1, 0.0),
                ("warm nsjail pool", warm, args.steps, cores, 0.0),
                ("warm nsjail pool, 1 in flight", warm, args.steps, 1, 0.0),
                ("warm nsjail pool, idle between", warm, args.steps // 2, 1, 0.02),
                ("fresh nsjail + python", fresh, args.fresh_steps, cores, 0.0),
            ):
                print(f"  {step:8} {name:32} ({n} steps)...", end="", flush=True)
                m = measure(fn, code, n, par, gap)
                print(f" p50 {m['p50_ms']:8.2f} ms", flush=True)
                rows.append((step, name, m))
    finally:
        pool.close()

    print(f"\nPer-step cost on this machine ({cores} cores); steps/s with up to {cores} in flight:")
    print(f"{'step':8} {'backend':32} {'p50 ms':>9} {'p95 ms':>9} {'steps/s':>9}")
    for step, name, m in rows:
        rate = "-" if m["steps_per_s"] != m["steps_per_s"] else f"{m['steps_per_s']:.1f}"
        print(f"{step:8} {name:32} {m['p50_ms']:9.2f} {m['p95_ms']:9.2f} {rate:>9}")
    for step in STEPS:
        by = {name: m for s, name, m in rows if s == step}
        warm_m, exec_m, fresh_m = (
            by["warm nsjail pool, 1 in flight"],
            by["in-process exec (unsafe)"],
            by["fresh nsjail + python"],
        )
        overhead = warm_m["p50_ms"] - exec_m["p50_ms"]
        print(
            f"{step}: warm-pool p50 overhead over exec {overhead:.2f} ms "
            f"(target <= 10 ms); warm pool / fresh jail rate "
            f"{by['warm nsjail pool']['steps_per_s'] / fresh_m['steps_per_s']:.1f}x (target >= 10x)"
        )


if __name__ == "__main__":
    main()
