"""Label-rule and decay variants of a head PPM, on the dev set, from stored features.

    python -m benchmarks.ppm_head_variants [--evolution docs/measured/evolution] [--round r1]

Fits a head on the round's trees under each variant of the reference label rules, at each
weight decay, and prints the dev pairwise accuracy (terminal and step pairs apart, with
problem-clustered 95 % intervals). Needs the features `python -m training.ppm_head` stored
for the round's policy; a variant whose pairs hold texts never embedded is skipped. Seconds a
variant: choose among them here, on dev train rows, and report the chosen one as fitted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from evaluation.ppm_pairs import tree_dev_pairs
from search.extract import LabelRules
from training.ppm_head import FeatureStore, dev_report, training_pairs

REFERENCE = {
    "top_k": 2, "final_pairs": True, "supported_only": True, "q": "outcomes", "q_margin": 0.5,
    "min_edit_chars": 20, "check_claims": True,
}  # fmt: skip
VARIANTS = {
    "reference": {},
    "no final-answer pairs": {"final_pairs": False},
    "Q margin 0.8": {"q_margin": 0.8},
    "top 1 per step": {"top_k": 1},
    "edit distance 40": {"min_edit_chars": 40},
}
DECAYS = (1e-4, 1e-3, 1e-2, 3e-2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ppm_head_variants")
    ap.add_argument("--evolution", default="docs/measured/evolution")
    ap.add_argument("--round", default="r1", help="the round whose policy and trees are used")
    args = ap.parse_args(argv)
    root = Path(args.evolution)
    store = FeatureStore(str(root / args.round / "policy"))
    dev = tree_dev_pairs(root / "dev" / "trees.jsonl", 8)
    trees = root / args.round / "generate" / "trees.jsonl"
    print(f"dev: {len(dev)} pairs; accuracy [95 % interval by problem]")
    for name, change in VARIANTS.items():
        pairs = training_pairs(trees, LabelRules(**{**REFERENCE, **change}))
        for decay in DECAYS:
            try:
                kinds = dev_report(store, pairs, dev, decay).by_kind
            except ValueError as e:
                print(f"{name}: skipped ({e})")
                break
            cells = "  ".join(
                f"{k} {r.accuracy:.3f} [{r.ci95_by_problem[0]:.3f}, {r.ci95_by_problem[1]:.3f}]"
                for k, r in sorted(kinds.items())
            )
            print(f"{name:<22} {len(pairs):>4} pairs  decay {decay:<6g} {cells}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
