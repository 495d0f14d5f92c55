"""Generated tokens per second: each engine alone (its batched ceiling) vs inside running MCTS.

Prints figures; it is not a test. For each engine and the default model:
  decode   one batch of 64-token samples of first-step prompts: the raw decoding ceiling;
  MCTS     MCTS on several GSM8K problems at once with the real nsjail sandbox, as a server
           would run them;
  replay   every request that MCTS made (same prompts, samples, stops), all at once, after
           clearing the prefix cache: the engine's own throughput on the search's workload.
MCTS / replay is how much of the engine the search keeps busy (short steps that end at stop
strings cost more per token than long samples, which MCTS / decode also counts).

    python -m benchmarks.engine_throughput [--engines vllm,transformers] [--problems 4]
    python -m benchmarks.engine_throughput --engines vllm,vllm:bfloat16   # dtypes side by side
    python -m benchmarks.engine_throughput --engines vllm:auto:1,vllm:auto:0  # cores left to
                                          # vLLM-CPU's scheduler (its rule: 1; ours on 2 cores: 0)
    python -m benchmarks.engine_throughput --engines vllm+block_size=128+top_p=0.95,vllm
                                          # engine settings / sampling after '+' (before/after)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

from models.default_model import ensure_default_model
from models.settings import ModelSettings
from sandbox import SandboxSettings, create_sandbox
from search import Budget, Components, SearchConfig
from search.mcts import mcts
from search.protocols import GenerationRequest
from search.steps import render_prompt

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k_test.jsonl"
FALLBACK = ["What is 12*7?", "Tom has 3 boxes of 12 pencils and gives away 7. How many are left?"]


def problems(n: int) -> list[str]:
    if DATA.exists():
        rows = [json.loads(line) for line in DATA.open()][:n]
        return [r["problem"] for r in rows]
    return (FALLBACK * n)[:n]


def parse_engine(spec: str) -> tuple[str, dict, dict]:
    """`vllm[:dtype[:reserved cores]][+setting=value…]` → engine, ModelSettings fields, and
    sampling overrides (`top_p`): `vllm:bfloat16`, `vllm:auto:1`, `vllm+block_size=128`."""
    base, *opts = spec.split("+")
    engine, _, rest = base.partition(":")
    dtype, _, reserved = rest.partition(":")
    settings: dict = {"cpu_kv_cache_gb": 2, "dtype": dtype or "auto"}
    if reserved:
        settings["cpu_reserved_cores"] = int(reserved)
    sampling: dict = {}
    for opt in opts:
        key, _, value = opt.partition("=")
        (sampling if key == "top_p" else settings)[key] = float(value) if "." in value else value
    return engine, settings, sampling


def make_policy(engine: str, path: str):
    """`engine` as `parse_engine` reads it."""
    engine, settings, _ = parse_engine(engine)
    if engine == "vllm":
        from models.vllm_policy import VLLMPolicy

        return VLLMPolicy(path, ModelSettings(**settings))
    from models.hf_policy import TransformersPolicy

    return TransformersPolicy(path)


async def standalone(policy, probs: list[str], n: int, max_tokens: int, top_p: float) -> float:
    """Tokens/s of one batch: every problem's first-step prompt, `n` samples each, no stops,
    sampled as the search samples (its temperature and top-p)."""
    t = SearchConfig().temperature
    reqs = [
        GenerationRequest(
            render_prompt(p, []), n=n, max_tokens=max_tokens, temperature=t, top_p=top_p
        )
        for p in probs
    ]
    await policy.generate(reqs[:1])  # warm-up
    t = time.perf_counter()
    out = await policy.generate(reqs)
    return sum(g.tokens for gens in out for g in gens) / (time.perf_counter() - t)


class Recording:
    """Passes calls through to the engine and keeps every request."""

    def __init__(self, policy) -> None:
        self.policy = policy
        self.requests: list[GenerationRequest] = []

    async def generate(self, requests):
        self.requests.extend(requests)
        return await self.policy.generate(requests)


async def replay(policy, requests: list[GenerationRequest]) -> float:
    if hasattr(policy, "llm"):
        await policy.llm.reset_prefix_cache()
    t = time.perf_counter()
    out = await policy.generate(requests)
    return sum(g.tokens for gens in out for g in gens) / (time.perf_counter() - t)


async def in_search(
    policy, probs: list[str], rollouts: int, sandbox, top_p: float
) -> dict[str, float]:
    comps = Components(policy, sandbox)
    cfg = SearchConfig(
        candidates=4, parallel_rollouts=4, max_depth=6, step_max_tokens=96, seed=0, top_p=top_p
    )
    t = time.perf_counter()
    results = await asyncio.gather(*(mcts(p, comps, Budget(rollouts=rollouts), cfg) for p in probs))
    wall = time.perf_counter() - t
    tokens = sum(r.usage.tokens for r in results)
    return {
        "tokens_per_s": tokens / wall,
        "tokens": tokens,
        "wall_s": wall,
        "policy_calls": sum(r.usage.policy_calls for r in results),
    }


def batch_figures(policy, before: dict) -> tuple[float, float | None]:
    """Mean sequences per engine batch, and prefix-cache hit rate (vLLM only)."""
    if hasattr(policy, "stats"):  # vLLM: sequences in flight when each request arrived
        s = policy.stats
        reqs = s.requests - before["requests"]
        inflight = (s.in_flight_sum - before["in_flight_sum"]) / max(reqs, 1)
        prompt = s.prompt_tokens - before["prompt_tokens"]
        cached = s.cached_prompt_tokens - before["cached"]
        return inflight, (cached / prompt if prompt else None)
    sizes = policy.batch_sizes[before["batches"] :]
    return (statistics.mean(sizes) if sizes else 0.0), None


def snapshot(policy) -> dict:
    if hasattr(policy, "stats"):
        s = policy.stats
        return {
            "requests": s.requests,
            "in_flight_sum": s.in_flight_sum,
            "prompt_tokens": s.prompt_tokens,
            "cached": s.cached_prompt_tokens,
        }
    return {"batches": len(policy.batch_sizes)}


async def bench_engine(engine: str, path: str, args, sandbox) -> dict:
    print(f"[{engine}] starting the engine…", flush=True)
    t = time.perf_counter()
    policy = make_policy(engine, path)
    print(f"[{engine}] ready in {time.perf_counter() - t:.0f}s", flush=True)
    probs = problems(args.problems)
    top_p = parse_engine(engine)[2].get("top_p", SearchConfig().top_p)
    try:
        ceiling = await standalone(policy, probs, args.samples, args.max_tokens, top_p)
        shape = f"{len(probs)}×{args.samples} sequences of {args.max_tokens} tokens"
        print(f"[{engine}] alone: {ceiling:.1f} tokens/s ({shape})", flush=True)
        before = snapshot(policy)
        recording = Recording(policy)
        search = await in_search(recording, probs, args.rollouts, sandbox, top_p)
        batch, hit = batch_figures(policy, before)
        print(
            f"[{engine}] in MCTS: {search['tokens_per_s']:.1f} tokens/s "
            f"({search['tokens']} tokens in {search['wall_s']:.0f}s)",
            flush=True,
        )
        same = await replay(policy, recording.requests)
        print(
            f"[{engine}] replay of its {len(recording.requests)} requests at once: "
            f"{same:.1f} tokens/s",
            flush=True,
        )
    finally:
        policy.close()
    return {
        "engine": engine,
        "alone": ceiling,
        "mcts": search["tokens_per_s"],
        "replay": same,
        "batch": batch,
        "hit": hit,
    }


async def main_async(args) -> None:
    path = str(ensure_default_model())
    sandbox = create_sandbox(SandboxSettings(workers=os.cpu_count() or 1)).start()
    rows = []
    try:
        for engine in args.engines.split(","):
            rows.append(await bench_engine(engine.strip(), path, args, sandbox))
    finally:
        sandbox.close()
    print(
        f"\nDefault model ({Path(path).name}) on this machine ({os.cpu_count()} cores); "
        f"MCTS: {args.problems} problems at once, {args.rollouts} rollouts each, "
        "4 candidates, 4 rollouts in flight per search"
    )
    print(
        f"{'engine':34} {'decode':>8} {'replay':>8} {'MCTS':>8} {'MCTS/replay':>12} "
        f"{'MCTS/decode':>12} {'mean batch':>11} {'prefix hit':>11}   (tokens/s)"
    )
    for r in rows:
        hit = f"{100 * r['hit']:.0f}%" if r["hit"] is not None else "n/a"
        print(
            f"{r['engine']:34} {r['alone']:8.1f} {r['replay']:8.1f} {r['mcts']:8.1f} "
            f"{100 * r['mcts'] / r['replay']:11.0f}% {100 * r['mcts'] / r['alone']:11.0f}% "
            f"{r['batch']:11.1f} {hit:>11}"
        )
    print("target: MCTS keeps >= 90% of the engine's raw decode (MCTS/decode)")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--engines", default="vllm,transformers")
    ap.add_argument("--problems", type=int, default=4, help="problems searched at once")
    ap.add_argument("--rollouts", type=int, default=4, help="MCTS rollouts per problem")
    ap.add_argument("--samples", type=int, default=4, help="samples per prompt when alone")
    ap.add_argument("--max-tokens", type=int, default=64, help="tokens per sample when alone")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
