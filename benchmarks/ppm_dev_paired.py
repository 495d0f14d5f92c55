"""Two rounds' head PPMs on the same dev pairs, paired: did the later one rank better?

    python -m benchmarks.ppm_dev_paired [--evolution docs/measured/evolution] r2 r3

Each round's interval alone overlaps the other's even where one wins on most pairs: the pairs
are the same, so the question is the difference per pair (1, ½ or 0 each side), its mean and a
95 % interval from a bootstrap over problems (a problem's pairs move together), terminal and
step pairs apart. Reads the features `python -m training.ppm_head` stored for each round's
policy (the dev texts are embedded when a head is fitted with `--dev-trees`): seconds, no model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.self_evolution_table import PPM_DIRS
from evaluation.ppm_pairs import pair_wins, tree_dev_pairs
from evaluation.stats import cluster_bootstrap_interval
from search.extract import PreferencePair
from training.ppm_head import FeatureStore, load_head, stored_scores


def dev_wins(evolution: Path, stage: str, dev: list[PreferencePair]) -> list[float]:
    """1, ½ or 0 per dev pair: the round's head scored its chosen side above the rejected."""
    head, report = load_head(evolution / PPM_DIRS[stage])
    if report is None:
        raise SystemExit(f"{stage}: its head records no policy to read features from")
    try:
        return pair_wins(stored_scores(head, FeatureStore(report.policy), dev))
    except ValueError as e:
        raise SystemExit(f"{stage}: {e}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ppm_dev_paired")
    ap.add_argument("--evolution", default="docs/measured/evolution")
    ap.add_argument("earlier", choices=sorted(PPM_DIRS))
    ap.add_argument("later", choices=sorted(PPM_DIRS))
    args = ap.parse_args(argv)
    root = Path(args.evolution)
    dev = tree_dev_pairs(root / "dev" / "trees.jsonl", 8)
    a, b = dev_wins(root, args.earlier, dev), dev_wins(root, args.later, dev)
    print(f"dev: {len(dev)} pairs from {len({p.problem_id for p in dev})} problems")
    print(f"{'pairs':<9} {'n':>4} {args.earlier:>7} {args.later:>7}  difference [95 % by problem]")
    for kind in ("terminal", "step", "all"):
        idx = [i for i, p in enumerate(dev) if kind in ("all", p.kind)]
        diff = [b[i] - a[i] for i in idx]
        low, high = cluster_bootstrap_interval(diff, [dev[i].problem_id or "" for i in idx])
        mean_a, mean_b = sum(a[i] for i in idx) / len(idx), sum(b[i] for i in idx) / len(idx)
        print(
            f"{kind:<9} {len(idx):>4} {mean_a:>7.3f} {mean_b:>7.3f}  "
            f"{mean_b - mean_a:+.3f} [{low:+.3f}, {high:+.3f}]"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
