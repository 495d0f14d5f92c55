"""Training tokens per second under glibc's malloc against a preloaded tcmalloc / jemalloc.

Prints figures; it is not a test. Why it exists: LoRA training of the 0.5B default on 2 AVX2
cores spent a fifth to a third of its CPU time in the kernel, zeroing pages for tensors above
glibc's 32 MB mmap threshold (the fp32 logits of a micro-batch over a 152k vocabulary are
gigabytes) that are unmapped again on free. An allocator that keeps freed pages avoids that.
Each trial is one `benchmarks.train_throughput` process (LoRA rank 16, `--steps` optimizer
steps), the allocators alternated in `--rounds` rounds so that a noisy machine hurts each
alike; the rate is the trainer's own (model loading left out), the kernel's share of the
child's CPU time comes from getrusage.

    python -m benchmarks.train_allocator --sft docs/measured/evolution/r0/data/sft.jsonl \
        [--allocators glibc,tcmalloc,jemalloc] [--steps 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys

from training.allocator import library, preload_env

RATE = re.compile(r"round \d+ sft\s+lora16\s+(\d+) tokens\s+([\d.]+) s\s+([\d.]+) tok/s")


def trial(allocator: str, args: argparse.Namespace) -> tuple[float, float]:
    """One training process: (tokens/s, kernel share of its CPU time)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.train_throughput", "--sft", args.sft, "--modes",
         "lora16", "--kinds", "sft", "--steps", str(args.steps), "--rounds", "1",
         "--micro-batch-size", str(args.micro_batch_size)],
        env=preload_env(allocator, os.environ), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user, sys_ = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    m = RATE.search(out)
    if m is None:
        raise SystemExit(f"no rate in the trainer's output:\n{out}")
    return float(m.group(3)), sys_ / (user + sys_)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sft", required=True, help="SFT examples (JSONL)")
    ap.add_argument("--allocators", default="glibc,tcmalloc")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--micro-batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    allocators = args.allocators.split(",")
    missing = [a for a in allocators if a != "glibc" and library(a) is None]
    if missing:  # preload_env would quietly run glibc under their names
        raise SystemExit(
            f"not installed: {', '.join(missing)} (e.g. apt-get install "
            "libjemalloc2 libtcmalloc-minimal4)"
        )
    rates: dict[str, list[float]] = {a: [] for a in allocators}
    for r in range(args.rounds):
        for a in allocators:
            rate, kernel = trial(a, args)
            rates[a].append(rate)
            print(f"round {r + 1} {a:9s} {rate:6.1f} tok/s  kernel {kernel:5.1%} of CPU")
    ref = statistics.median(rates[allocators[0]])
    print("\nmedian tokens/s")
    for a in allocators:
        med = statistics.median(rates[a])
        print(f"  {a:9s} {med:6.1f}  ({med / ref:.2f}× {allocators[0]})")


if __name__ == "__main__":
    main()
