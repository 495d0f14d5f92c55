"""The SFT step with logits only at trained positions against HF's loss over every logit.

Prints figures; it is not a test. Both ways run forward and backward of the same LoRA model on
the same micro-batches of real SFT examples (length-grouped, split into passes of
`--max-pass-tokens` as the trainer does), interleaved batch by batch so that a noisy machine
hurts both alike: `full` is `model(**batch).loss` (HF computes the 152k-word output layer and
its softmax at every position), `trained` is `training.sft.trained_loss_sum` (only at the
positions some row of the pass is trained on). Also printed: the share of positions each
computes logits for, and the largest difference between the two losses.

    python -m benchmarks.sft_logits --sft docs/measured/evolution/r0/data/sft.jsonl \
        [--batches 6] [--micro-batch-size 8] [--lora-rank 16]
"""

from __future__ import annotations

import argparse
import statistics
import time

from models.default_model import resolve_model
from search.extract import SftExample
from training.common import TrainHParams, apply_lora, length_grouped_batches, read_jsonl
from training.sft import IGNORE, collate_rows, split_passes, tokenize_example, trained_loss_sum


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sft", required=True, help="SFT examples (JSONL)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--micro-batch-size", type=int, default=8)
    ap.add_argument("--max-pass-tokens", type=int, default=4096)
    ap.add_argument("--lora-rank", type=int, default=16)
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = resolve_model(args.model)
    tok = AutoTokenizer.from_pretrained(base)
    rows = [tokenize_example(tok, ex) for ex in read_jsonl(args.sft, SftExample)]
    batches = length_grouped_batches([len(r[0]) for r in rows], args.micro_batch_size, 0)
    batches = batches[: args.batches]
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = apply_lora(model, TrainHParams(lora_rank=args.lora_rank), "CAUSAL_LM")
    model.train()
    print(
        f"model {base}; LoRA rank {args.lora_rank}; {len(batches)} micro-batches of "
        f"{args.micro_batch_size}; passes of ≤ {args.max_pass_tokens} tokens; "
        f"{torch.get_num_threads()} threads"
    )

    def passes(idx: list[int]) -> list[dict[str, torch.Tensor]]:
        return split_passes(collate_rows([rows[i] for i in idx], 0), args.max_pass_tokens)

    def step(way: str, ps: list[dict[str, torch.Tensor]]) -> tuple[float, float]:
        total = sum(int((p["labels"][:, 1:] != IGNORE).sum()) for p in ps)
        t0 = time.perf_counter()
        value = 0.0
        for p in ps:
            if way == "full":
                n = int((p["labels"][:, 1:] != IGNORE).sum())
                loss = model(**p).loss * (n / total)
            else:
                s, _ = trained_loss_sum(model, p)
                loss = s / total
            loss.backward()
            value += loss.item()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t0, value

    secs: dict[str, list[float]] = {"full": [], "trained": []}
    tokens = kept = positions = 0
    worst = 0.0
    for i, idx in enumerate(batches):
        ps = passes(idx)
        tokens += sum(int(p["attention_mask"].sum()) for p in ps)
        for p in ps:
            wanted = p["labels"][:, 1:] != IGNORE
            kept += int(wanted.any(dim=0).sum()) * wanted.shape[0]
            positions += p["input_ids"].numel()
        order = ("full", "trained") if i % 2 == 0 else ("trained", "full")
        losses = {}
        for way in order:
            s, losses[way] = step(way, ps)
            secs[way].append(s)
        worst = max(worst, abs(losses["full"] - losses["trained"]))
        print(
            f"  batch {i + 1}: full {secs['full'][-1]:6.1f} s  trained "
            f"{secs['trained'][-1]:6.1f} s  loss {losses['full']:.5f} / "
            f"{losses['trained']:.5f}",
            flush=True,
        )
    full, trained = sum(secs["full"]), sum(secs["trained"])
    print(
        f"\nlogits at {kept / positions:.0%} of the padded positions; largest loss difference "
        f"{worst:.2e}"
    )
    med = {way: statistics.median(s) for way, s in secs.items()}
    print(f"full    {tokens / full:6.1f} tok/s  (median batch {med['full']:.1f} s)")
    print(
        f"trained {tokens / trained:6.1f} tok/s  (median batch {med['trained']:.1f} s)  "
        f"{full / trained:.2f}× full"
    )


if __name__ == "__main__":
    main()
