"""What the PPM's two ways of batching pairs cost an epoch, counted on a round's own pairs.

`training.ppm_train` scores each distinct text of a micro-batch once. With `--pair-batches
parent` the pairs of one parent step (rStar-Math's top-2 × bottom-2: four pairs over four
texts) share a micro-batch, so fewer texts are read than with `length` (pairs of similar
length, the default); the batches are also less evenly long, so the figure that matters is the
padded tokens, what a forward and backward pass cost. Counts, not timings: they do not depend on
how busy the machine is. The same tokenizer, truncation, held-out split and seed as the trainer.

    python -m benchmarks.ppm_pair_batches --pairs docs/measured/evolution/r1/data/ppm_pairs.jsonl \
        [--tokenizer docs/measured/evolution/r1/policy] [--micro-batch-size 4] [--holdout-share 0.1]
"""

from __future__ import annotations

import argparse

from models.default_model import resolve_model
from models.ppm import ppm_text
from search.extract import PreferencePair
from training.common import TrainHParams, length_grouped_batches, read_jsonl, split_held_out
from training.ppm_train import pair_parent, pair_problem, parent_grouped_batches


def main() -> None:
    from transformers import AutoTokenizer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", required=True, help="a round's ppm_pairs.jsonl")
    ap.add_argument("--tokenizer", default="default", help="model path, or 'default'")
    ap.add_argument("--micro-batch-size", type=int, default=4)
    ap.add_argument("--holdout-share", type=float, default=0.1)
    args = ap.parse_args()
    hp = TrainHParams(micro_batch_size=args.micro_batch_size, holdout_share=args.holdout_share)
    tok = AutoTokenizer.from_pretrained(resolve_model(args.tokenizer))
    tok.truncation_side = "left"
    every = read_jsonl(args.pairs, PreferencePair)
    pairs, _ = split_held_out(every, pair_problem, hp.holdout_share)

    def ids(req: object) -> tuple[int, ...]:
        return tuple(tok(ppm_text(req), truncation=True, max_length=hp.max_length)["input_ids"])

    data = [(ids(p.chosen_request()), ids(p.rejected_request())) for p in pairs]
    lengths = [max(len(c), len(r)) for c, r in data]
    parents = [pair_parent(p) for p in pairs]
    modes = {
        "length": length_grouped_batches(lengths, hp.micro_batch_size, hp.seed),
        "parent": parent_grouped_batches(parents, lengths, hp.micro_batch_size, hp.seed),
    }
    print(f"{len(pairs)} training pairs ({args.pairs}), micro-batches of {hp.micro_batch_size}")
    print(f"{'batches':>9} {'texts':>7} {'tokens':>9} {'padded tokens':>14}  mode")
    base = None
    for mode, batches in modes.items():
        texts = tokens = padded = 0
        for batch in batches:
            rows = {t for i in batch for t in data[i]}
            texts += len(rows)
            tokens += sum(map(len, rows))
            padded += len(rows) * max(map(len, rows))
        base = base or padded
        print(
            f"{len(batches):>9} {texts:>7} {tokens:>9} {padded:>14}  {mode} "
            f"({padded / base:.2f}× length's padded tokens)"
        )


if __name__ == "__main__":
    main()
