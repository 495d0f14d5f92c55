"""Search engine overhead: node expansions per second with an instant policy and no-op sandbox.

Prints figures; it is not a test. The policy answers at once with random steps (a final step
with probability 1/4 below the first level) and the sandbox returns at once, so what is left is
the search's own cost: selection, prompt rendering, parsing, de-duplication, syntax checks,
backup and bookkeeping. Serial (1 rollout in flight) and parallel (8) runs alternate, so both
see the same machine load.

    python -m benchmarks.search_overhead [--rollouts 400] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Sequence

from search import Budget, Components, SearchConfig
from search.grading import Grader
from search.mcts import mcts
from search.protocols import ExecLimits, ExecResult, Generation, GenerationRequest
from search.steps import ANSWER, CODE_END, STEP_END


class InstantPolicy:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.batch_sizes: list[int] = []

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Generation]]:
        self.batch_sizes.append(len(requests))
        out = []
        for req in requests:
            if req.prompt.endswith(ANSWER):
                out.append(
                    [Generation(f"\\boxed{{{self.rng.randint(0, 3)}}}", "<end_of_answer>", 6)]
                )
                continue
            depth = req.prompt.count(STEP_END) - 2  # the few-shot examples hold two step ends
            gens = []
            for _ in range(req.n):
                k = self.rng.randint(0, 10**6)
                final = depth > 0 and self.rng.random() < 0.25
                body = f"# Step: try {k}\nv{k} = {k} * 2" + (f"\nprint(v{k} % 4)" if final else "")
                gens.append(Generation(body, CODE_END if final else STEP_END, 16))
            out.append(gens)
        return out


class NoopSandbox:
    async def run(self, code: str, limits: ExecLimits | None = None) -> ExecResult:
        return ExecResult(True, "1\n")


class StringGrader(Grader):
    """Answer clustering by string, without math-verify's worker round trip: this times the
    search, not sympy."""

    def equal(self, gold: str, pred: str) -> bool:
        return gold.strip() == pred.strip()

    async def aequal(self, gold: str, pred: str) -> bool:
        return self.equal(gold, pred)


async def one_run(parallel: int, rollouts: int, seed: int) -> dict[str, float]:
    policy = InstantPolicy(seed)
    comps = Components(policy, NoopSandbox(), grader=StringGrader())
    cfg = SearchConfig(candidates=4, parallel_rollouts=parallel, max_depth=8)
    t0 = time.perf_counter()
    r = await mcts("What is 2 + 2?", comps, Budget(rollouts=rollouts), cfg)
    dt = time.perf_counter() - t0
    expansions = sum(1 for n in r.tree if n.status == "expanded")
    return {
        "expansions_per_s": expansions / dt,
        "nodes_per_s": r.usage.nodes / dt,
        "rollouts_per_s": r.usage.rollouts / dt,
        "mean_batch": statistics.mean(policy.batch_sizes),
        "nodes": r.usage.nodes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rollouts", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    results: dict[int, list[dict[str, float]]] = {1: [], 8: []}
    for rep in range(args.repeats):
        for parallel in (1, 8):
            res = asyncio.run(one_run(parallel, args.rollouts, seed=rep))
            results[parallel].append(res)
            print(
                f"  run {rep + 1}/{args.repeats}  parallel={parallel}: "
                f"{res['expansions_per_s']:8.0f} expansions/s, {res['nodes']:.0f} nodes",
                flush=True,
            )
    print(
        f"\nMCTS engine overhead ({args.rollouts} rollouts, candidates=4, max_depth=8, "
        f"instant policy, no-op sandbox), median of {args.repeats}:"
    )
    print(
        f"{'parallel rollouts':>18} {'expansions/s':>13} {'nodes/s':>10} "
        f"{'rollouts/s':>11} {'mean batch':>11}"
    )
    med = {}
    for parallel, rs in results.items():
        med[parallel] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        m = med[parallel]
        print(
            f"{parallel:>18} {m['expansions_per_s']:>13.0f} {m['nodes_per_s']:>10.0f} "
            f"{m['rollouts_per_s']:>11.0f} {m['mean_batch']:>11.2f}"
        )
    ratio = med[8]["expansions_per_s"] / med[1]["expansions_per_s"]
    print(f"ratio parallel 8 / parallel 1: {ratio:.2f}x expansions/s")


if __name__ == "__main__":
    main()
