"""Training tokens per second: full fine-tuning against LoRA, side by side, on the default model.

Prints figures; it is not a test. Each trial runs `training.sft.train_sft` (and with `--kinds
sft,ppm` also `training.ppm_train.train_ppm`) for `--steps` optimizer steps on verified GSM8K
reference solutions (`benchmarks.gsm8k_bootstrap_yield --sft-out`), the modes interleaved in
`--rounds` rounds so that a noisy machine hurts both alike. The rate counts every token the
model read (prompt and padding excluded) over the loop's time: model loading and saving are
left out, the first step's warm-up is not. PPM pairs for this are made by pairing each step
with the same-numbered step of the next solution: what they teach does not matter here, only
their lengths do.

    python -m benchmarks.gsm8k_bootstrap_yield --limit 300 --out traj.jsonl --sft-out sft.jsonl
    python -m benchmarks.train_throughput --sft sft.jsonl --trajectories traj.jsonl \
        [--modes full,lora16] [--kinds sft,ppm] [--steps 6] [--rounds 2]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import shutil
import statistics
import tempfile
from pathlib import Path

from models.default_model import resolve_model
from search.extract import PreferencePair, SftExample, Trajectory
from training.common import TrainHParams, read_jsonl, resolve_precision
from training.ppm_train import train_ppm
from training.sft import train_sft


def pairs_from(trajectories: list[Trajectory]) -> list[PreferencePair]:
    out = []
    for a, b in itertools.pairwise(trajectories):
        for k in range(min(len(a.steps), len(b.steps))):
            out.append(
                PreferencePair(
                    problem=a.problem,
                    prefix=[s.text for s in a.steps[:k]],
                    chosen=a.steps[k].text,
                    rejected=b.steps[k].text,
                    chosen_q=1.0,
                    rejected_q=-1.0,
                )
            )
    return out


def mode_hparams(mode: str, steps: int, micro: int) -> TrainHParams:
    """`full` or `lora<rank>`."""
    rank = int(mode.removeprefix("lora")) if mode.startswith("lora") else 0
    return TrainHParams(
        lr=1e-5 if not rank else 1e-4,
        max_steps=steps,
        micro_batch_size=micro,
        grad_accum=1,
        warmup_ratio=0.0,
        lora_rank=rank,
        checkpoint_every_s=0,
        log_every=max(1, steps),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sft", required=True, help="SFT examples (JSONL)")
    ap.add_argument("--trajectories", help="verified trajectories (JSONL), for --kinds ppm")
    ap.add_argument("--model", default="default")
    ap.add_argument("--modes", default="full,lora16")
    ap.add_argument("--kinds", default="sft")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--micro-batch-size", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    base = resolve_model(args.model)
    examples = read_jsonl(args.sft, SftExample)
    kinds = args.kinds.split(",")
    pairs = pairs_from(read_jsonl(args.trajectories, Trajectory)) if "ppm" in kinds else []
    modes = args.modes.split(",")
    print(
        f"model {base}; precision {resolve_precision('auto')}; {len(examples)} SFT examples, "
        f"{len(pairs)} pairs; {args.steps} steps × micro-batch {args.micro_batch_size}"
    )
    rates: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for kind in kinds:
            for mode in modes:
                hp = mode_hparams(mode, args.steps, args.micro_batch_size)
                tmp = Path(tempfile.mkdtemp(prefix="train-throughput-"))
                try:
                    if kind == "sft":
                        res = train_sft(base, examples, tmp / "out", hp)
                    else:
                        res = train_ppm(base, pairs, tmp / "out", hp)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                rates.setdefault((kind, mode), []).append(res.tokens_per_s)
                print(
                    f"  round {r + 1} {kind:3s} {mode:7s} {res.tokens:6d} tokens "
                    f"{res.seconds:6.1f} s  {res.tokens_per_s:6.1f} tok/s  trainable "
                    f"{res.trainable_params / 1e6:.1f} M of {res.total_params / 1e6:.0f} M  "
                    f"loss {res.step_losses[0]:.3f} → {res.final_loss:.3f}",
                    flush=True,
                )
    print("\nmedian tokens/s")
    for kind in kinds:
        ref = statistics.median(rates[(kind, modes[0])])
        for mode in modes:
            med = statistics.median(rates[(kind, mode)])
            print(f"  {kind:3s} {mode:7s} {med:7.1f}  ({med / ref:.2f}× {modes[0]})")


if __name__ == "__main__":
    main()
