"""Supervised fine-tuning of the policy on verified trajectories (rStar-Math's policy SFT).

The loss is the causal-LM loss on the solution only: the prompt (problem and header) and the
executor's `<output>` blocks are masked out (see `search.extract.SftExample`). One loop, top
to bottom, under HF accelerate: one CPU with bf16 autocast, one GPU, or several GPUs under
`accelerate launch` (DDP/FSDP) without a change.

    python -m training.sft sft.jsonl out_dir [--base default] [--max-steps N] [--lr 2e-5] ...
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from search.extract import SftExample
from training.common import (
    HeldOut,
    Resumable,
    TrainHParams,
    TrainResult,
    apply_lora,
    check_checkpoint_dir,
    fingerprint,
    length_grouped_batches,
    make_accelerator,
    make_optimizer,
    pad_batch,
    param_counts,
    save_checkpoint,
    split_held_out,
    train_loop,
    train_result,
    trainer_main,
)

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


def _problem_key(ex: SftExample) -> str:
    return ex.problem_id or ex.prompt


def collate_rows(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    """Tokenized examples as one right-padded batch (padding is never trained)."""
    ids = pad_batch([r[0] for r in rows], pad_id)
    labels = pad_batch([r[1] for r in rows], pad_id, value_pad=IGNORE)
    mask = pad_batch([[1] * len(r[0]) for r in rows], 0)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def split_passes(batch: dict[str, Any], max_pass_tokens: int) -> list[dict[str, Any]]:
    """A micro-batch cut into passes of at most `max_pass_tokens` padded tokens (one row at
    the least): the same gradient in less memory."""
    rows, width = batch["input_ids"].shape
    per_pass = max(1, max_pass_tokens // width)
    return [{k: v[i : i + per_pass] for k, v in batch.items()} for i in range(0, rows, per_pass)]


def trained_loss_sum(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """(summed next-token loss over the batch's trained tokens, their number), with logits only
    at the positions some row is trained on (`logits_to_keep`). The prompt and the executor's
    output are 38 % of an SFT batch's tokens, and the 152k-word output layer with its fp32
    softmax is the largest single cost of a step on a CPU: computing it where no row is trained
    only costs time and memory. Through the model's own forward, so DDP and FSDP see one call."""
    import torch
    import torch.nn.functional as F

    labels = batch["labels"]
    wanted = labels[:, 1:] != IGNORE  # position p predicts token p + 1
    n = int(wanted.sum())
    if n == 0:
        return torch.zeros((), device=labels.device), 0
    keep = wanted.any(dim=0).nonzero().squeeze(1)
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep
    ).logits
    targets = labels[:, keep + 1]
    loss = F.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="sum"
    )
    return loss, n


def train_sft(
    base_model_path: str,
    examples: Sequence[SftExample],
    out_dir: str | Path,
    hparams: TrainHParams | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Fine-tune the causal LM at `base_model_path` on `examples` (every weight, or LoRA
    adapters merged back); save it (HF format, with its tokenizer) to `out_dir`, atomically.
    A run stopped midway resumes from its last saved state. Returns what the run did."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hp = hparams or TrainHParams()
    out = check_checkpoint_dir(out_dir, overwrite)
    acc = make_accelerator(hp)

    # --- data: tokenize once, drop what does not fit, hold out a share of the problems -------
    tok = AutoTokenizer.from_pretrained(base_model_path)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    train_ex, held_ex = split_held_out(examples, _problem_key, hp.holdout_share)

    def fits(d: tuple[list[int], list[int]]) -> bool:
        return len(d[0]) <= hp.max_length and any(x != IGNORE for x in d[1])

    data = [tokenize_example(tok, ex) for ex in train_ex]
    kept = [d for d in data if fits(d)]
    held = [d for d in (tokenize_example(tok, ex) for ex in held_ex) if fits(d)]
    if not kept:
        raise ValueError(f"no SFT example fits max_length={hp.max_length}")

    batches = length_grouped_batches([len(d[0]) for d in kept], hp.micro_batch_size, hp.seed)

    # --- model and optimizer ---------------------------------------------------------------------
    model = AutoModelForCausalLM.from_pretrained(base_model_path, dtype=torch.float32)
    if hp.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    model = apply_lora(model, hp, "CAUSAL_LM")
    trainable, total_params = param_counts(model)
    optimizer = make_optimizer(model, hp)
    model, optimizer = acc.prepare(model, optimizer)

    def held_out_loss() -> float:
        """Mean loss per trained token of the held-out examples, one at a time (a batch's
        fp32 logits over a 152k vocabulary are gigabytes: at the end of a long run that was
        what the machine ran out of memory on)."""
        m = acc.unwrap_model(model)
        was_training = m.training
        m.eval()
        loss_sum, n_tok = 0.0, 0
        with torch.no_grad():
            for row in held:
                batch = {k: v.to(acc.device) for k, v in collate_rows([row], pad_id).items()}
                loss, trained = trained_loss_sum(m, batch)
                loss_sum += loss.item()
                n_tok += trained
        m.train(was_training)
        return loss_sum / max(1, n_tok)

    def loss_fn(m: Any, batch: dict[str, Any], backward: Any) -> tuple[float, int, None]:
        """The mean loss over the batch's trained tokens, in passes of at most
        `max_pass_tokens` padded tokens, each pass's sum divided by the batch's count."""
        total = max(1, int((batch["labels"][:, 1:] != IGNORE).sum()))
        value = 0.0
        for part in split_passes(batch, hp.max_pass_tokens):
            loss_sum, n = trained_loss_sum(m, part)
            if n == 0:
                continue
            loss = loss_sum / total
            backward(loss)
            value += loss.item()
        return value, int(batch["attention_mask"].sum()), None

    resumable = Resumable(
        acc, out, fingerprint("sft", base_model_path, hp, kept), hp.checkpoint_every_s
    )
    meter = train_loop(
        acc,
        model,
        optimizer,
        batches,
        lambda idx: collate_rows([kept[i] for i in idx], pad_id),
        hp,
        "sft",
        loss_fn,
        resumable,
        before=(lambda: {"heldout_before": held_out_loss()}) if held else None,
    )

    # --- save ------------------------------------------------------------------------------------
    heldout = None
    if held:
        heldout = HeldOut(
            metric="loss",
            examples=len(held),
            problems=len({_problem_key(e) for e in held_ex}),
            before=meter.extra["heldout_before"],
            after=held_out_loss(),
        ).logged("sft")
    result = train_result(
        "sft",
        out,
        base_model_path,
        len(kept),
        meter,
        resumable,
        hp,
        (trainable, total_params),
        skipped=len(data) - len(kept),
        heldout=heldout,
    )
    save_checkpoint(acc, model, tok, out, result)
    resumable.clear()
    return result


def main() -> None:
    trainer_main(
        train_sft,
        SftExample,
        "SFT the policy on SFT examples (JSONL).",
        ("--base", "model path or 'default'"),
    )


if __name__ == "__main__":
    main()
