"""What the policy's SFT (models/sft.py) and the PPM's training (models/ppm_train.py) share:
hyper-parameters, the Accelerator, the learning-rate schedule, the throughput log, JSONL files,
and saving a checkpoint atomically in the standard HF format.

Training runs under HF accelerate, so the same script runs on one CPU (bf16 autocast where the
CPU has it natively), one GPU, or several under `accelerate launch` (DDP, FSDP).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from models.hardware import cpu_has_native_bf16

log = logging.getLogger("models.train")

Precision = Literal["auto", "no", "bf16", "fp16"]
Record = TypeVar("Record", bound=BaseModel)


class TrainHParams(BaseModel):
    """Hyper-parameters of one training run (SFT or PPM). Batch sizes count examples (SFT)
    or pairs (PPM) per process; the effective batch is
    micro_batch_size × grad_accum × number of processes."""

    lr: float = Field(2e-5, gt=0, description="peak learning rate (AdamW)")
    epochs: float = Field(2.0, gt=0, description="passes over the data (fractions allowed)")
    max_steps: int | None = Field(None, ge=1, description="cap on optimizer steps")
    micro_batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(8, ge=1, description="micro-batches per optimizer step")
    max_length: int = Field(1024, ge=16, description="tokens; longer SFT examples are skipped")
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine decays to lr × this")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    mixed_precision: Precision = Field(
        "auto",
        description="auto: bf16 where the GPU or CPU has it natively; else fp16 on a GPU, "
        "fp32 on a CPU",
    )
    gradient_checkpointing: bool = False
    seed: int = 0
    log_every: int = Field(10, ge=1, description="optimizer steps between log lines")


class TrainResult(BaseModel):
    """What a run did; also written into the checkpoint as rstar-train.json."""

    kind: Literal["sft", "ppm"]
    out_dir: str
    base_model: str
    examples: int  # SFT examples or PPM pairs trained on
    skipped: int = 0  # too long for max_length
    optimizer_steps: int
    tokens: int  # every token the model read (prompt and padding excluded)
    seconds: float
    tokens_per_s: float
    final_loss: float
    step_losses: list[float]  # mean loss of each optimizer step
    step_accuracies: list[float] = Field(default_factory=list)  # PPM: share with s⁺ > s⁻
    hparams: TrainHParams


# --- data files --------------------------------------------------------------------------------


def write_jsonl(path: str | Path, records: Iterable[BaseModel]) -> int:
    """Write records one JSON object a line (atomically: temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    n = 0
    try:
        with os.fdopen(fd, "w") as f:
            for r in records:
                f.write(r.model_dump_json() + "\n")
                n += 1
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def read_jsonl(path: str | Path, cls: type[Record]) -> list[Record]:
    # split on "\n" only: JSON strings may hold other Unicode line separators
    lines = Path(path).read_text().split("\n")
    return [cls.model_validate_json(line) for line in lines if line.strip()]


# --- the loop's pieces ---------------------------------------------------------------------------


def resolve_precision(precision: Precision) -> Precision:
    """What "auto" means here: bf16 where the hardware has it natively (an AVX2-only CPU
    emulates it: there a 135M model's SFT stalled in bf16 and ran at 36 tokens/s in fp32)."""
    import torch

    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "no"


def make_accelerator(hp: TrainHParams) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    precision = resolve_precision(hp.mixed_precision)
    acc = Accelerator(mixed_precision=precision, gradient_accumulation_steps=hp.grad_accum)
    set_seed(hp.seed)
    return acc


def lr_at(step: int, total: int, hp: TrainHParams) -> float:
    """Linear warm-up, then cosine decay to `min_lr_ratio` × lr."""
    warmup = math.ceil(hp.warmup_ratio * total)
    if step < warmup:
        return hp.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return hp.lr * (hp.min_lr_ratio + (1 - hp.min_lr_ratio) * cosine)


def total_steps(batches_per_epoch: int, hp: TrainHParams) -> int:
    steps = math.ceil(math.ceil(batches_per_epoch / hp.grad_accum) * hp.epochs)
    return max(1, min(steps, hp.max_steps) if hp.max_steps else steps)


def make_optimizer(model: Any, hp: TrainHParams) -> Any:
    import torch

    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": hp.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=hp.lr, betas=(0.9, 0.95), eps=1e-8)


# Between `log_every` lines a step still logs when this long has passed (a CPU step can take a
# minute): local figures only, since the token rate is a collective call all processes make.
HEARTBEAT_S = 60.0


class Meter:
    """Token counts and per-step losses; a log line every `log_every` optimizer steps."""

    def __init__(self, accelerator: Any, total: int, hp: TrainHParams, what: str) -> None:
        self.acc, self.total, self.hp, self.what = accelerator, total, hp, what
        self.t0 = self.t_last = self.t_beat = time.perf_counter()
        self.tokens = self.tokens_last = 0
        self.step_losses: list[float] = []
        self.step_accuracies: list[float] = []
        self._loss: list[float] = []
        self._acc: list[float] = []

    def micro(self, tokens: int, loss: float, accuracy: float | None = None) -> None:
        self.tokens += tokens
        self._loss.append(loss)
        if accuracy is not None:
            self._acc.append(accuracy)

    def step(self, step: int, lr: float) -> None:
        """Close optimizer step `step` (1-based)."""
        self.step_losses.append(sum(self._loss) / max(1, len(self._loss)))
        if self._acc:
            self.step_accuracies.append(sum(self._acc) / len(self._acc))
        self._loss, self._acc = [], []
        now = time.perf_counter()
        if step % self.hp.log_every and step != self.total:
            if self.acc.is_main_process and now - self.t_beat >= HEARTBEAT_S:
                self.t_beat = now
                loss = self.step_losses[-1]
                log.info("%s step %d/%d loss %.4f lr %.2e %.0fs",
                         self.what, step, self.total, loss, lr, now - self.t0)  # fmt: skip
            return
        self.t_beat = now
        tokens = self.global_tokens()
        rate = (tokens - self.tokens_last) / max(now - self.t_last, 1e-9)
        self.t_last, self.tokens_last = now, tokens
        extra = f" acc {self.step_accuracies[-1]:.2f}" if self.step_accuracies else ""
        if self.acc.is_main_process:
            log.info(
                "%s step %d/%d loss %.4f%s lr %.2e %.0f tok/s %.0fs",
                self.what, step, self.total, self.step_losses[-1], extra, lr, rate, now - self.t0,
            )  # fmt: skip

    def global_tokens(self) -> int:
        """Tokens read by all processes so far (a collective call: every process makes it)."""
        import torch

        t = torch.tensor(self.tokens, device=self.acc.device)
        return int(self.acc.reduce(t, reduction="sum").item())

    def seconds(self) -> float:
        return time.perf_counter() - self.t0


# --- checkpoints ---------------------------------------------------------------------------------


def check_out_dir(out_dir: str | Path, overwrite: bool) -> Path:
    """Fail before training, not after, when the checkpoint could not be written."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (pass overwrite=True to replace it)")
    return out


def save_checkpoint(
    accelerator: Any,
    model: Any,
    tokenizer: Any,
    out_dir: str | Path,
    meta: BaseModel | None = None,
) -> Path:
    """Save `model` (+ tokenizer, + `meta` as rstar-train.json) in the standard HF format.

    The files go into a temporary directory next to `out_dir`, which is then renamed into place
    (an existing `out_dir` is moved aside first and removed after): a crash never leaves a half
    checkpoint at `out_dir`. Every process must call this (FSDP gathers the weights)."""
    out = Path(out_dir)
    state = accelerator.get_state_dict(model)  # full weights, gathered from every process
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            unwrapped = accelerator.unwrap_model(model)
            unwrapped.config.use_cache = True
            unwrapped.save_pretrained(tmp, state_dict=state, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            if meta is not None:
                (tmp / "rstar-train.json").write_text(meta.model_dump_json(indent=2))
            old = None
            if out.exists():
                old = out.with_name(f".{out.name}.old-{os.getpid()}")
                os.rename(out, old)
            os.rename(tmp, out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    accelerator.wait_for_everyone()
    return out


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, group: int = 64
) -> list[list[int]]:
    """Indices in batches of similar lengths, in random order: shuffle, sort each window of
    `group` batches by length, cut it into batches, shuffle the batches. Less padding (a quarter
    of the tokens of random batches of four GSM8K solutions are padding)."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    window = batch_size * group
    for i in range(0, len(order), window):
        chunk = sorted(order[i : i + window], key=lambda j: lengths[j])
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def batch_loader(batches: list[list[int]], collate: Callable[[list[int]], Any]) -> Any:
    """A DataLoader whose items are whole micro-batches (lists of indices), reshuffled each
    epoch; under several processes accelerate hands each process its share of them."""
    import torch

    return torch.utils.data.DataLoader(
        batches, batch_size=1, shuffle=True, collate_fn=lambda items: collate(items[0])
    )


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int, value_pad: int | None = None) -> Any:
    """Right-pad lists of ids into a tensor (with `value_pad` instead of `pad_id` if given)."""
    import torch

    width = max(len(r) for r in rows)
    fill = pad_id if value_pad is None else value_pad
    return torch.tensor([list(r) + [fill] * (width - len(r)) for r in rows], dtype=torch.long)


def add_hparam_args(ap: argparse.ArgumentParser) -> None:
    """A --flag per hyper-parameter (unset flags keep the defaults)."""
    for name, field in TrainHParams.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif name == "mixed_precision":
            ap.add_argument(flag, choices=["auto", "no", "bf16", "fp16"], default=None)
        else:
            kind = int if field.annotation in (int, int | None) else float
            ap.add_argument(flag, type=kind, default=None, help=field.description)


def hparams_from_args(args: argparse.Namespace) -> TrainHParams:
    given = {k: getattr(args, k) for k in TrainHParams.model_fields}
    return TrainHParams(**{k: v for k, v in given.items() if v is not None})
