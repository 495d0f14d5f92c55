"""Generated tokens per second: each engine alone (its batched ceiling) vs inside a running search.

Prints figures; it is not a test. For each engine (and step format) and the default model:
  decode   one batch of 64-token samples of first-step prompts: the raw decoding ceiling;
  search   a search (MCTS unless `--search`) on several GSM8K problems at once with the real
           nsjail sandbox, as a server would run them;
  replay   every request that search made (same prompts, samples, stops), all at once, after
           clearing the prefix cache: the engine's own throughput on the search's workload.
search / replay is how much of the engine the search keeps busy (short steps that end at stop
strings cost more per token than long samples, which search / decode also counts); the prefix
hit rate and prompt tokens per generated token say how much prompt the engine recomputed.

    python -m benchmarks.engine_throughput [--engines vllm,transformers] [--problems 4]
    python -m benchmarks.engine_throughput --engines vllm,vllm:bfloat16   # dtypes side by side
    python -m benchmarks.engine_throughput --engines vllm:auto:1,vllm:auto:0  # cores left to
                                          # vLLM-CPU's scheduler (its rule: 1; ours on 2 cores: 0)
    python -m benchmarks.engine_throughput --engines vllm+block_size=128+top_p=0.95,vllm
                                          # engine settings / sampling after '+' (before/after)
    python -m benchmarks.engine_throughput --engines vllm --search self_consistency \
        --step-formats code,text --step-max-tokens 256 --max-depth 12   # the two step formats
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
from search import ALGORITHMS, Budget, Components, SearchConfig, SearchSettings, run_search
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

    async def chat_prompt(self, messages):
        return await self.policy.chat_prompt(messages)


async def replay(policy, requests: list[GenerationRequest]) -> float:
    if hasattr(policy, "llm"):
        await policy.llm.reset_prefix_cache()
    t = time.perf_counter()
    out = await policy.generate(requests)
    return sum(g.tokens for gens in out for g in gens) / (time.perf_counter() - t)


async def in_search(
    policy, probs: list[str], sandbox, top_p: float, args, step_format: str
) -> dict[str, float]:
    comps = Components(policy, sandbox)
    cfg = SearchSettings(
        candidates=4,
        parallel_rollouts=4,
        max_depth=args.max_depth,
        step_max_tokens=args.step_max_tokens,
        seed=0,
        top_p=top_p,
    ).config("few_shot", step_format)
    budget = Budget(rollouts=args.rollouts)
    t = time.perf_counter()
    results = await asyncio.gather(*(run_search(args.search, p, comps, budget, cfg) for p in probs))
    wall = time.perf_counter() - t
    tokens = sum(r.usage.tokens for r in results)
    return {
        "tokens_per_s": tokens / wall,
        "tokens": tokens,
        "wall_s": wall,
        "policy_calls": sum(r.usage.policy_calls for r in results),
        "prompt_per_token": sum(r.usage.prompt_tokens for r in results) / max(tokens, 1),
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


async def bench_engine(engine: str, path: str, args, sandbox) -> list[dict]:
    """The engine's decode ceiling, then the search in each step format on it."""
    print(f"[{engine}] starting the engine…", flush=True)
    t = time.perf_counter()
    policy = make_policy(engine, path)
    print(f"[{engine}] ready in {time.perf_counter() - t:.0f}s", flush=True)
    probs = problems(args.problems)
    top_p = parse_engine(engine)[2].get("top_p", SearchConfig().top_p)
    rows = []
    try:
        ceiling = await standalone(policy, probs, args.samples, args.max_tokens, top_p)
        shape = f"{len(probs)}×{args.samples} sequences of {args.max_tokens} tokens"
        print(f"[{engine}] alone: {ceiling:.1f} tokens/s ({shape})", flush=True)
        for fmt in args.step_formats.split(","):
            name = engine if fmt == "code" else f"{engine} ({fmt} steps)"
            before = snapshot(policy)
            recording = Recording(policy)
            search = await in_search(recording, probs, sandbox, top_p, args, fmt)
            batch, hit = batch_figures(policy, before)
            print(
                f"[{name}] in {args.search}: {search['tokens_per_s']:.1f} tokens/s "
                f"({search['tokens']} tokens in {search['wall_s']:.0f}s)",
                flush=True,
            )
            same = await replay(policy, recording.requests)
            print(
                f"[{name}] replay of its {len(recording.requests)} requests at once: "
                f"{same:.1f} tokens/s",
                flush=True,
            )
            rows.append(
                {
                    "engine": name,
                    "alone": ceiling,
                    "search": search["tokens_per_s"],
                    "replay": same,
                    "batch": batch,
                    "hit": hit,
                    "prompt_per_token": search["prompt_per_token"],
                }
            )
    finally:
        policy.close()
    return rows


async def main_async(args) -> None:
    path = str(ensure_default_model())
    sandbox = create_sandbox(SandboxSettings(workers=os.cpu_count() or 1)).start()
    rows = []
    try:
        for engine in args.engines.split(","):
            rows += await bench_engine(engine.strip(), path, args, sandbox)
    finally:
        sandbox.close()
    print(
        f"\nDefault model ({Path(path).name}) on this machine ({os.cpu_count()} cores); "
        f"{args.search}: {args.problems} problems at once, {args.rollouts} rollouts each, "
        f"4 candidates, 4 rollouts in flight per search, steps of at most "
        f"{args.step_max_tokens} tokens, depth {args.max_depth}"
    )
    print(
        f"{'engine':34} {'decode':>8} {'replay':>8} {'search':>8} {'search/replay':>14} "
        f"{'search/decode':>14} {'mean batch':>11} {'prefix hit':>11} {'prompt/token':>13}"
        "   (tokens/s)"
    )
    for r in rows:
        hit = f"{100 * r['hit']:.0f}%" if r["hit"] is not None else "n/a"
        print(
            f"{r['engine']:34} {r['alone']:8.1f} {r['replay']:8.1f} {r['search']:8.1f} "
            f"{100 * r['search'] / r['replay']:13.0f}% {100 * r['search'] / r['alone']:13.0f}% "
            f"{r['batch']:11.1f} {hit:>11} {r['prompt_per_token']:13.1f}"
        )
    print("target: a search keeps >= 90% of the engine's raw decode (search/decode)")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--engines", default="vllm,transformers")
    ap.add_argument("--problems", type=int, default=4, help="problems searched at once")
    ap.add_argument("--rollouts", type=int, default=4, help="rollouts per problem")
    ap.add_argument("--search", default="mcts", choices=sorted(ALGORITHMS), help="the search run")
    ap.add_argument("--step-formats", default="code", help="comma-separated: code, text")
    ap.add_argument("--step-max-tokens", type=int, default=96, help="a step's token limit")
    ap.add_argument("--max-depth", type=int, default=6, help="steps in a solution, at most")
    ap.add_argument("--samples", type=int, default=4, help="samples per prompt when alone")
    ap.add_argument("--max-tokens", type=int, default=64, help="tokens per sample when alone")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
