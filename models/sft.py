"""Supervised fine-tuning of the policy on verified trajectories (rStar-Math's policy SFT).

The loss is the causal-LM loss on the solution only: the prompt (problem and header) and the
executor's `<output>` blocks are masked out (see `search.extract.SftExample`). One loop, top
to bottom, under HF accelerate: one CPU with bf16 autocast, one GPU, or several GPUs under
`accelerate launch` (DDP/FSDP) without a change.

    python -m models.sft sft.jsonl out_dir [--base default] [--max-steps N] [--lr 2e-5] ...
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.train_common import (
    Meter,
    TrainHParams,
    TrainResult,
    add_hparam_args,
    batch_loader,
    check_out_dir,
    hparams_from_args,
    length_grouped_batches,
    lr_at,
    make_accelerator,
    make_optimizer,
    pad_batch,
    read_jsonl,
    save_checkpoint,
    total_steps,
)
from search.extract import SftExample

IGNORE = -100  # label of a token without loss


def tokenize_example(tok: Any, ex: SftExample) -> tuple[list[int], list[int]]:
    """(input ids, labels) with IGNORE on the prompt and the executor's output. Each segment is
    tokenized on its own; segments break at newlines, where the tokenizer breaks anyway."""
    ids: list[int] = []
    labels: list[int] = []
    for i, (text, trained) in enumerate(ex.segments()):
        piece = tok(text, add_special_tokens=i == 0)["input_ids"]
        ids += piece
        labels += piece if trained else [IGNORE] * len(piece)
    return ids, labels


def train_sft(
    base_model_path: str,
    examples: Sequence[SftExample],
    out_dir: str | Path,
    hparams: TrainHParams | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Fine-tune the causal LM at `base_model_path` on `examples`; save it (HF format, with its
    tokenizer) to `out_dir`, atomically. Returns what the run did."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hp = hparams or TrainHParams()
    out = check_out_dir(out_dir, overwrite)
    acc = make_accelerator(hp)

    # --- data: tokenize once, drop what does not fit -----------------------------------------
    tok = AutoTokenizer.from_pretrained(base_model_path)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    data = [tokenize_example(tok, ex) for ex in examples]
    kept = [d for d in data if len(d[0]) <= hp.max_length and any(x != IGNORE for x in d[1])]
    if not kept:
        raise ValueError(f"no SFT example fits max_length={hp.max_length}")

    def collate(idx: list[int]) -> dict[str, Any]:
        batch = [kept[i] for i in idx]
        ids = pad_batch([b[0] for b in batch], pad_id)
        labels = pad_batch([b[1] for b in batch], pad_id, value_pad=IGNORE)
        mask = pad_batch([[1] * len(b[0]) for b in batch], 0)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    batches = length_grouped_batches([len(d[0]) for d in kept], hp.micro_batch_size, hp.seed)
    loader = batch_loader(batches, collate)

    # --- model and optimizer ---------------------------------------------------------------------
    model = AutoModelForCausalLM.from_pretrained(base_model_path, dtype=torch.float32)
    if hp.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    optimizer = make_optimizer(model, hp)
    model, optimizer, loader = acc.prepare(model, optimizer, loader)
    total = total_steps(len(loader), hp)
    meter = Meter(acc, total, hp, "sft")

    # --- the loop ------------------------------------------------------------------------------
    model.train()
    step = 0
    while step < total:
        for batch in loader:
            lr = lr_at(step, total, hp)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with acc.accumulate(model):
                loss = model(**batch).loss
                acc.backward(loss)
                if acc.sync_gradients:
                    acc.clip_grad_norm_(model.parameters(), hp.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            meter.micro(int(batch["attention_mask"].sum()), loss.item())
            if acc.sync_gradients:
                step += 1
                meter.step(step, lr)
                if step >= total:
                    break

    # --- save ------------------------------------------------------------------------------------
    model.eval()
    tokens = meter.global_tokens()
    result = TrainResult(
        kind="sft",
        out_dir=str(out),
        base_model=str(base_model_path),
        examples=len(kept),
        skipped=len(data) - len(kept),
        optimizer_steps=step,
        tokens=tokens,
        seconds=round(meter.seconds(), 3),
        tokens_per_s=round(tokens / max(meter.seconds(), 1e-9), 1),
        final_loss=meter.step_losses[-1],
        step_losses=meter.step_losses,
        hparams=hp,
    )
    save_checkpoint(acc, model, tok, out, result)
    return result


def main() -> None:
    from models.default_model import resolve_model

    ap = argparse.ArgumentParser(description="SFT the policy on SFT examples (JSONL).")
    ap.add_argument("data", help="JSONL of search.extract.SftExample")
    ap.add_argument("out", help="checkpoint directory to write")
    ap.add_argument("--base", default="default", help="model path or 'default'")
    ap.add_argument("--overwrite", action="store_true")
    add_hparam_args(ap)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    hp = hparams_from_args(args)
    result = train_sft(
        resolve_model(args.base), read_jsonl(args.data, SftExample), args.out, hp, args.overwrite
    )
    if int(os.environ.get("RANK", "0")) == 0:  # once under `accelerate launch`
        print(result.model_dump_json(exclude={"step_losses", "step_accuracies"}, indent=2))


if __name__ == "__main__":
    main()
