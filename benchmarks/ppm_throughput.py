"""PPM scoring throughput on a search's own workload: transformers vs vLLM's pooling runner.

Prints figures; it is not a test. The workload is what PPM-augmented MCTS sends: for each
expanded node of recorded search trees, one score request per valid child (problem + the
path's steps + the child), `--wave` expansions at a time, as concurrent rollouts send them.
Siblings share everything but their last step, which vLLM's prefix cache reuses and a padded
transformers batch recomputes. Engines run one after the other in one process, on the same
requests; the scores of the first engine are the reference for the others (max |difference|).

    python -m benchmarks.ppm_throughput --ppm docs/measured/evolution/r1/ppm \
        --trees docs/measured/evolution/r1/generate/trees.jsonl [--expansions 96] [--wave 8]
        [--engines transformers,vllm]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from models.factory import load_reward_model
from models.settings import ModelSettings
from search.protocols import ScoreRequest
from search.tree import Tree


def workload(trees: Path, expansions: int) -> list[list[ScoreRequest]]:
    """Per expansion (a node with two or more valid children): its children's score requests."""
    out: list[list[ScoreRequest]] = []
    with trees.open() as f:
        for line in f:
            tree = Tree.from_json(json.dumps(json.loads(line)["tree"]))
            for node in tree.nodes:
                kids = [c for c in tree.children(node) if c.status != "invalid"]
                if len(kids) < 2:
                    continue
                path = tuple(n.text for n in tree.path(node))
                out.append([ScoreRequest(tree.problem, (*path, c.text)) for c in kids])
                if len(out) == expansions:
                    return out
    return out


async def run(engine: str, ppm: str, waves: list[list[ScoreRequest]]) -> tuple[float, list[float]]:
    model = load_reward_model(ModelSettings(ppm_model=ppm, ppm_engine=engine))
    try:
        await model.score(waves[0][:1])  # warm-up (first call compiles / allocates)
        t0 = time.perf_counter()
        scores: list[float] = []
        for wave in waves:
            scores += await model.score(wave)
        return time.perf_counter() - t0, scores
    finally:
        model.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ppm", required=True)
    ap.add_argument("--trees", type=Path, required=True)
    ap.add_argument("--expansions", type=int, default=96)
    ap.add_argument("--wave", type=int, default=8, help="expansions scored at once")
    ap.add_argument("--engines", default="transformers,vllm")
    args = ap.parse_args()

    exps = workload(args.trees, args.expansions)
    waves = [
        [r for e in exps[i : i + args.wave] for r in e] for i in range(0, len(exps), args.wave)
    ]
    n = sum(len(w) for w in waves)
    print(f"{len(exps)} expansions, {n} score requests, waves of {args.wave} expansions")
    ref: list[float] | None = None
    for engine in args.engines.split(","):
        secs, scores = asyncio.run(run(engine, args.ppm, waves))
        diff = "" if ref is None else f"  max |score - {args.engines.split(',')[0]}| "
        if ref is not None:
            diff += f"{max(abs(a - b) for a, b in zip(scores, ref, strict=True)):.4f}"
        ref = ref or scores
        print(f"{engine:>12}: {secs:7.1f} s  {n / secs:6.1f} scores/s{diff}", flush=True)


if __name__ == "__main__":
    main()
