"""Training the process preference model on step-level preference pairs (rStar-Math's PPM).

The PPM starts from the new policy: its backbone with a fresh one-label head
(`models.ppm.init_ppm_from_backbone`), or an existing PPM to continue from. Each pair is two
texts, the shared prefix with the chosen step and with the rejected one, in the bare step
format the PPM reads at inference (`models.ppm.ppm_text`). The score is tanh(logit), as at
inference, and the loss is −log σ(s⁺ − s⁻) (`models.ppm.pairwise_loss`). One loop, top to
bottom, under HF accelerate (CPU with bf16 autocast, a GPU, or `accelerate launch` on several).

    python -m training.ppm_train pairs.jsonl out_dir [--init default] [--max-steps N] ...
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from models.checks import is_ppm
from models.ppm import head_parameters, init_ppm_from_backbone, pairwise_loss, ppm_text
from search.extract import PreferencePair
from search.protocols import ScoreRequest
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


def _load_ppm(acc: Any, init_model_path: str, seed: int, out: Path) -> Any:
    """The PPM to train: `init_model_path` itself if it is one, else a fresh head on its
    backbone, written once by the main process next to `out`, read by all, then removed."""
    import torch
    from transformers import AutoModelForSequenceClassification

    path = Path(init_model_path)
    scratch = out.with_name(f".{out.name}.ppm-init")
    if not is_ppm(init_model_path):
        path = scratch
        if acc.is_main_process:
            shutil.rmtree(scratch, ignore_errors=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            init_ppm_from_backbone(init_model_path, scratch, seed=seed)
        acc.wait_for_everyone()
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32)
    acc.wait_for_everyone()
    if acc.is_main_process:
        shutil.rmtree(scratch, ignore_errors=True)
    if model.config.num_labels != 1:
        raise ValueError(f"{path} has {model.config.num_labels} labels; a PPM has one")
    return model


def pair_problem(p: PreferencePair) -> str:
    """What the held-out split goes by: the problem."""
    return p.problem_id or p.problem


def pair_parent(p: PreferencePair) -> tuple[str, tuple[str, ...]]:
    """The step a pair's two sides continue: pairs with one parent share texts."""
    return pair_problem(p), tuple(p.prefix)


def parent_grouped_batches(
    parents: Sequence[Hashable],
    lengths: Sequence[int],
    batch_size: int,
    seed: int,
    window: int = 64,
) -> list[list[int]]:
    """Indices in batches of `batch_size` (the last may be short) that keep the pairs of one
    parent step together, since they share texts (rStar-Math's top-2 × bottom-2 pairs: 4 pairs,
    4 texts): shuffle the parents, sort each window of them by length, fill batches first-fit,
    shuffle the batches. A parent with more pairs than a batch holds is split."""
    rng = random.Random(seed)
    by_parent: dict[Hashable, list[int]] = {}
    for i, parent in enumerate(parents):
        by_parent.setdefault(parent, []).append(i)
    units = [
        g[k : k + batch_size] for g in by_parent.values() for k in range(0, len(g), batch_size)
    ]
    rng.shuffle(units)
    batches: list[list[int]] = []
    left: list[int] = []  # the partly filled batches' pairs, once every window is done
    for w in range(0, len(units), window):
        open_: list[list[int]] = []
        for unit in sorted(units[w : w + window], key=lambda u: max(lengths[i] for i in u)):
            room = next((b for b in open_ if len(b) + len(unit) <= batch_size), None)
            if room is None:
                open_.append(room := [])
            room += unit
            if len(room) == batch_size:
                batches.append(room)
                open_.remove(room)
        left += [i for b in open_ for i in b]
    batches += [left[k : k + batch_size] for k in range(0, len(left), batch_size)]
    rng.shuffle(batches)
    return batches


def train_ppm(
    init_model_path: str,
    pairs: Sequence[PreferencePair],
    out_dir: str | Path,
    hparams: TrainHParams | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train a PPM on `pairs`, starting from `init_model_path` (a policy: new one-label head on
    its backbone; or a PPM: continued), every weight or LoRA adapters (the head is always
    trained in full). Saves it (HF format, with its tokenizer) to `out_dir`, atomically. Texts
    longer than max_length keep their end (the step being scored). With `holdout_share`, the
    pairs of that share of the problems are not trained on: the result holds their pairwise
    accuracy before and after."""
    import torch
    from transformers import AutoTokenizer

    hp = hparams or TrainHParams()
    out = check_checkpoint_dir(out_dir, overwrite)
    if not pairs:
        raise ValueError("no preference pairs to train on")
    acc = make_accelerator(hp)

    # --- data: each pair is two texts (the shared prefix + the chosen / the rejected step) ----
    tok = AutoTokenizer.from_pretrained(init_model_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side, tok.truncation_side = "right", "left"  # as models/hf_reward.py reads

    def encode(req: ScoreRequest) -> list[int]:
        return tok(ppm_text(req), truncation=True, max_length=hp.max_length)["input_ids"]

    train_pairs, held_pairs = split_held_out(pairs, pair_problem, hp.holdout_share)
    data = [(encode(p.chosen_request()), encode(p.rejected_request())) for p in train_pairs]
    held = [(encode(p.chosen_request()), encode(p.rejected_request())) for p in held_pairs]

    def collate_pairs(items: list[tuple[list[int], list[int]]]) -> dict[str, Any]:
        """Each distinct text once (pairs of one parent share their sides), and which row is
        each pair's chosen and rejected side."""
        rows: dict[tuple[int, ...], int] = {}
        sides = [rows.setdefault(tuple(t), len(rows)) for pair in items for t in pair]
        ids = pad_batch(list(rows), tok.pad_token_id)
        mask = pad_batch([[1] * len(r) for r in rows], 0)
        return {"input_ids": ids, "attention_mask": mask, "sides": torch.tensor(sides)}

    lengths = [max(len(c), len(r)) for c, r in data]
    if hp.pair_batches == "parent":
        parents = [pair_parent(p) for p in train_pairs]
        batches = parent_grouped_batches(parents, lengths, hp.micro_batch_size, hp.seed)
    else:
        batches = length_grouped_batches(lengths, hp.micro_batch_size, hp.seed)

    # --- model and optimizer ---------------------------------------------------------------------
    model = _load_ppm(acc, init_model_path, hp.seed, out)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    if hp.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    model = apply_lora(model, hp, "SEQ_CLS")
    trainable, total_params = param_counts(model)
    optimizer = make_optimizer(model, hp)
    model, optimizer = acc.prepare(model, optimizer)

    def scores(m: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
        """(chosen, rejected) scores of the batch's pairs."""
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
        logits = m(**inputs).logits[:, 0].float()
        s = (logits if hp.logit_scale else torch.tanh(logits))[batch["sides"]]
        return s[0::2], s[1::2]

    def held_out_accuracy() -> float:
        """Share of held-out pairs the PPM ranks right (ties count half)."""
        m = acc.unwrap_model(model)
        was_training = m.training
        m.eval()
        right = 0.0
        with torch.no_grad():
            for i in range(0, len(held), hp.micro_batch_size):
                batch = {
                    k: v.to(acc.device)
                    for k, v in collate_pairs(held[i : i + hp.micro_batch_size]).items()
                }
                pos, neg = scores(m, batch)
                right += float((pos > neg).sum()) + 0.5 * float((pos == neg).sum())
        m.train(was_training)
        return right / len(held)

    def loss_fn(m: Any, batch: dict[str, Any], backward: Any) -> tuple[float, int, float]:
        pos, neg = scores(m, batch)  # one label per text: no logits worth splitting for
        loss = pairwise_loss(pos, neg)
        backward(loss)
        accuracy = (pos > neg).float().mean().item()
        return loss.item(), int(batch["attention_mask"].sum()), accuracy

    resumable = Resumable(
        acc, out, fingerprint("ppm", init_model_path, hp, data), hp.checkpoint_every_s
    )
    meter = train_loop(
        acc,
        model,
        optimizer,
        batches,
        lambda idx: collate_pairs([data[i] for i in idx]),
        hp,
        "ppm",
        loss_fn,
        resumable,
        before=(lambda: {"heldout_before": held_out_accuracy()}) if held else None,
    )

    # --- save ------------------------------------------------------------------------------------
    heldout = None
    if held:
        heldout = HeldOut(
            metric="pairwise_accuracy",
            examples=len(held),
            problems=len({pair_problem(p) for p in held_pairs}),
            before=meter.extra["heldout_before"],
            after=held_out_accuracy(),
        ).logged("ppm")
    result = train_result(
        "ppm",
        out,
        init_model_path,
        len(data),
        meter,
        resumable,
        hp,
        (trainable, total_params),
        heldout=heldout,
    )
    if hp.logit_scale:  # the head, and so every logit, divided: inference reads tanh(v / scale)
        with torch.no_grad():
            for p in head_parameters(acc.unwrap_model(model)):
                p.div_(hp.logit_scale)
    save_checkpoint(acc, model, tok, out, result)
    resumable.clear()
    return result


def main() -> None:
    trainer_main(
        train_ppm,
        PreferencePair,
        "Train the PPM on preference pairs (JSONL).",
        ("--init", "policy or PPM path, or 'default'"),
    )


if __name__ == "__main__":
    main()
