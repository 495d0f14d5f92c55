"""What the policy's SFT (training/sft.py) and the PPM's training (training/ppm_train.py) share:
hyper-parameters, the Accelerator, LoRA, the held-out split, the learning-rate schedule, the
optimisation loop with its throughput log and resumable state, JSONL files, and saving a
checkpoint atomically in the standard HF format.

Training runs under HF accelerate, so the same script runs on one CPU (bf16 autocast where the
CPU has it natively), one GPU, or several under `accelerate launch` (DDP, FSDP).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
import typing
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from evaluation.problems import is_held_out
from models.hardware import cpu_has_native_bf16

log = logging.getLogger("training")

Precision = Literal["auto", "no", "bf16", "fp16"]
Record = TypeVar("Record", bound=BaseModel)

# what a checkpoint records beside its weights: a trainer's run, or a head PPM's fitted head
TRAINING_RECORD = "rstar-train.json"
HEAD_RECORD = "rstar-head.json"


# settings that change how a run goes, not what it computes
NOT_IN_RECIPE = ("checkpoint_every_s", "log_every", "max_pass_tokens")
# settings added after recorded runs (docs/measured/evolution/), left out of a recipe while at
# this default, so that those runs keep their fingerprints (the default must never change)
ADDED_LATER: dict[str, Any] = {"head_lr": None, "pair_batches": "length", "logit_scale": None}


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
    max_pass_tokens: int = Field(
        4096,
        ge=16,
        description="padded tokens per forward/backward pass: an SFT micro-batch "
        "above it is split into passes (the same gradient, less memory: the logits over a "
        "152k vocabulary are 0.6 GB per 1k tokens in fp32)",
    )
    lora_rank: int = Field(
        0,
        ge=0,
        description="LoRA rank (peft, every linear layer; merged into a plain HF "
        "checkpoint on save); 0 trains every weight",
    )
    lora_alpha: float | None = Field(None, gt=0, description="LoRA scale numerator; 2 × rank")
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    head_lr: float | None = Field(
        None,
        gt=0,
        description="peak learning rate of the PPM's one-label head, which trains in full "
        "even under LoRA (default: lr). A LoRA-sized lr is too much for it: with inputs "
        "near 5 in size over 896 dimensions, one AdamW step of 2e-4 moves a score's logit by "
        "up to 0.9, and tanh saturates (round 1's first PPM: loss stuck at ln 2)",
    )
    pair_batches: Literal["length", "parent"] = Field(
        "length",
        description="PPM micro-batches: 'length' groups pairs of similar length; 'parent' "
        "keeps the pairs of one parent step together, so the texts they share are scored once "
        "(round 1's 1,229 pairs hold 1,550 distinct texts, not 2,458)",
    )
    logit_scale: float | None = Field(
        None,
        gt=0,
        description="PPM: the pairwise loss on raw logits, as the reference trains, and the "
        "saved head divided by this, so that tanh of a logit is tanh(v / scale) (the "
        "reference's 5); unset: the loss on tanh scores, which caps a pair's margin at 2",
    )
    holdout_share: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="share of problems held out (by a hash of the problem, so "
        "the same ones each round) to measure before and after training: SFT loss, PPM "
        "pairwise accuracy",
    )
    checkpoint_every_s: float = Field(
        900,
        ge=0,
        description="seconds between resumable training states beside the "
        "checkpoint (0: none); a run started again with the same data and settings resumes",
    )
    seed: int = 0
    log_every: int = Field(10, ge=1, description="optimizer steps between log lines")

    def fingerprint_fields(self) -> dict[str, Any]:
        """What a resumed run must share with the run it resumes (not how often it logs)."""
        return drop_added_later(self.model_dump(exclude=set(NOT_IN_RECIPE)), ADDED_LATER)


def drop_added_later(fields: dict[str, Any], added_later: dict[str, Any]) -> dict[str, Any]:
    """`fields` without the settings added after runs were recorded that are at their default:
    so the recorded runs' fingerprints (recipes, round identities) stay what they were. A dotted
    name ("search.unsolved_rollouts") reaches into a section."""
    out = dict(fields)
    for name, default in added_later.items():
        head, _, rest = name.partition(".")
        if rest and isinstance(out.get(head), dict):
            out[head] = drop_added_later(out[head], {rest: default})
        elif not rest and head in out and out[head] == default:
            del out[head]
    return out


class HeldOut(BaseModel):
    """The held-out measurement: SFT mean token loss, or PPM pairwise accuracy (s⁺ > s⁻)."""

    metric: Literal["loss", "pairwise_accuracy"]
    examples: int  # held-out SFT examples or PPM pairs
    problems: int
    before: float  # the starting model
    after: float  # the trained model

    def logged(self, what: str) -> HeldOut:
        """This measurement, after a line in the trainer's log."""
        name, unit, digits = ("loss", "examples", 4)
        if self.metric == "pairwise_accuracy":
            name, unit, digits = ("pairwise accuracy", "pairs", 3)
        log.info(
            f"%s held-out %s %.{digits}f → %.{digits}f on %d %s of %d problems",
            *(what, name, self.before, self.after, self.examples, unit, self.problems),
        )
        return self


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
    trainable_params: int = 0
    total_params: int = 0
    resumed_from_step: int = 0  # > 0: the run continued a saved training state
    heldout: HeldOut | None = None
    fingerprint: str = ""  # the recipe (training.common.fingerprint)
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
    """AdamW; biases and norms without weight decay, a PPM head at `head_lr` (each group's
    `lr_scale` follows the schedule: see train_loop)."""
    import torch

    from models.ppm import is_head_parameter

    head_scale = (hp.head_lr or hp.lr) / hp.lr
    # (decay, head) → params; the first two always, in this order (saved optimizer states)
    groups: dict[tuple[bool, bool], list[Any]] = {(True, False): [], (False, False): []}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((p.ndim >= 2, is_head_parameter(name)), []).append(p)
    return torch.optim.AdamW(
        [
            {
                "params": params,
                "weight_decay": hp.weight_decay if decay else 0.0,
                "lr_scale": head_scale if head else 1.0,
            }
            for (decay, head), params in groups.items()
        ],
        lr=hp.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )


# Between `log_every` lines a step still logs when this long has passed (a CPU step can take a
# minute): local figures only, since the token rate is a collective call all processes make.
HEARTBEAT_S = 60.0


class Meter:
    """Steps, micro-batches, token counts and per-step losses; a log line every `log_every`
    optimizer steps. Its state is part of the resumable training state."""

    def __init__(self, accelerator: Any, total: int, hp: TrainHParams, what: str) -> None:
        self.acc, self.total, self.hp, self.what = accelerator, total, hp, what
        self.t0 = self.t_last = self.t_beat = time.perf_counter()
        self.steps = self.micros = 0  # optimizer steps and micro-batches done
        self.tokens = self.tokens_last = 0
        self.seconds_before = 0.0  # spent by the runs this one resumes
        self.step_losses: list[float] = []
        self.step_accuracies: list[float] = []
        self.extra: dict[str, Any] = {}  # e.g. the held-out figure before training
        self._loss: list[float] = []
        self._acc: list[float] = []

    def micro(self, tokens: int, loss: float, accuracy: float | None = None) -> None:
        self.micros += 1
        self.tokens += tokens
        self._loss.append(loss)
        if accuracy is not None:
            self._acc.append(accuracy)

    def step(self, lr: float) -> None:
        """Close the current optimizer step."""
        self.steps += 1
        step = self.steps
        self.step_losses.append(sum(self._loss) / max(1, len(self._loss)))
        if self._acc:
            self.step_accuracies.append(sum(self._acc) / len(self._acc))
        self._loss, self._acc = [], []
        now = time.perf_counter()
        if step % self.hp.log_every and step != self.total:
            if self.acc.is_main_process and now - self.t_beat >= HEARTBEAT_S:
                self.t_beat = now
                loss = self.step_losses[-1]
                log.info(
                    "%s step %d/%d loss %.4f lr %.2e %.0fs",
                    self.what,
                    step,
                    self.total,
                    loss,
                    lr,
                    self.seconds(),
                )
            return
        self.t_beat = now
        tokens = self.global_tokens()
        rate = (tokens - self.tokens_last) / max(now - self.t_last, 1e-9)
        self.t_last, self.tokens_last = now, tokens
        extra = f" acc {self.step_accuracies[-1]:.2f}" if self.step_accuracies else ""
        if self.acc.is_main_process:
            log.info(
                "%s step %d/%d loss %.4f%s lr %.2e %.0f tok/s %.0fs",
                self.what,
                step,
                self.total,
                self.step_losses[-1],
                extra,
                lr,
                rate,
                self.seconds(),
            )

    def global_tokens(self) -> int:
        """Tokens read by all processes so far (a collective call: every process makes it)."""
        import torch

        t = torch.tensor(self.tokens, device=self.acc.device)
        return int(self.acc.reduce(t, reduction="sum").item())

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.t0

    # accelerate's save_state/load_state call these (register_for_checkpointing)
    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "micros": self.micros,
            "tokens": self.tokens,
            "seconds": self.seconds(),
            "step_losses": self.step_losses,
            "step_accuracies": self.step_accuracies,
            "extra": self.extra,
            "accumulation_step": self.acc.step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.micros = state["steps"], state["micros"]
        self.tokens = self.tokens_last = state["tokens"]
        self.seconds_before = state["seconds"]
        self.t0 = self.t_last = self.t_beat = time.perf_counter()
        self.step_losses, self.step_accuracies = state["step_losses"], state["step_accuracies"]
        self.extra = state["extra"]
        self.acc.step = state["accumulation_step"]  # where gradient accumulation stood


# --- LoRA ----------------------------------------------------------------------------------------


def apply_lora(model: Any, hp: TrainHParams, task: Literal["CAUSAL_LM", "SEQ_CLS"]) -> Any:
    """`model` with LoRA adapters on every linear layer (peft) when hp.lora_rank > 0; for a
    PPM the one-label head stays fully trained (peft's modules_to_save for SEQ_CLS)."""
    if not hp.lora_rank:
        return model
    from peft import LoraConfig, get_peft_model

    if hp.gradient_checkpointing:
        model.enable_input_require_grads()  # frozen embeddings: checkpointed blocks need grads
    cfg = LoraConfig(
        r=hp.lora_rank,
        lora_alpha=hp.lora_alpha or 2 * hp.lora_rank,
        lora_dropout=hp.lora_dropout,
        target_modules="all-linear",
        task_type=task,
    )
    return get_peft_model(model, cfg)


def param_counts(model: Any) -> tuple[int, int]:
    """(trainable, total) parameters."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def _is_peft(model: Any) -> bool:
    return hasattr(model, "merge_and_unload") and hasattr(model, "peft_config")


# --- the held-out split ---------------------------------------------------------------------------


def split_held_out(
    items: Sequence[Record], key: Callable[[Record], str], share: float
) -> tuple[list[Record], list[Record]]:
    """(train, held out) by problem. If every problem would be held out, none is."""
    held = [x for x in items if is_held_out(key(x), share)]
    if len(held) == len(items):
        return list(items), []
    return [x for x in items if not is_held_out(key(x), share)], held


# --- the optimisation loop ------------------------------------------------------------------------


def epoch_loader(
    accelerator: Any,
    batches: list[list[int]],
    collate: Callable[[list[int]], Any],
    seed: int,
    epoch: int,
) -> Any:
    """Epoch `epoch`'s micro-batches in an order fixed by (seed, epoch), so a resumed run reads
    the same data in the same order; under several processes each gets its share."""
    import torch

    order = list(batches)
    random.Random(seed * 100_003 + epoch).shuffle(order)
    loader = torch.utils.data.DataLoader(
        order, batch_size=1, shuffle=False, collate_fn=lambda items: collate(items[0])
    )
    return accelerator.prepare_data_loader(loader)


class Resumable:
    """The training state (weights, optimizer, RNGs, the Meter) saved every
    `checkpoint_every_s` through accelerate's save_state into `.<out>.resume/` beside the
    checkpoint, atomically (temp dir, then rename), with a fingerprint of the data and the
    settings: a run started again with the same ones continues from it, any other starts over.
    Removed once the final checkpoint is in place."""

    def __init__(self, accelerator: Any, out: Path, fingerprint: str, every_s: float) -> None:
        self.acc, self.every_s, self.fingerprint = accelerator, every_s, fingerprint
        self.dir = out.with_name(f".{out.name}.resume")
        self.t_saved = time.monotonic()

    def restore(self) -> bool:
        mark = self.dir / "fingerprint"
        if not mark.exists():
            return False
        if mark.read_text() != self.fingerprint:
            log.info("%s: saved for other data or settings, starting over", self.dir)
            return False
        self.acc.load_state(str(self.dir))
        self.t_saved = time.monotonic()
        return True

    def maybe_save(self, force: bool = False) -> None:
        due = force or (self.every_s > 0 and time.monotonic() - self.t_saved >= self.every_s)
        if self.acc.num_processes > 1:  # every process must agree: the main one decides
            from accelerate.utils import broadcast_object_list

            due = broadcast_object_list([due])[0]
        if not due:
            return
        tmp = self.dir.with_name(f"{self.dir.name}.tmp-save")
        if self.acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        self.acc.wait_for_everyone()
        self.acc.save_state(str(tmp))
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            (tmp / "fingerprint").write_text(self.fingerprint)
            old = self.dir.with_name(f"{self.dir.name}.tmp-old")
            shutil.rmtree(old, ignore_errors=True)
            if self.dir.exists():
                os.rename(self.dir, old)
            os.rename(tmp, self.dir)
            shutil.rmtree(old, ignore_errors=True)
            log.info("training state saved to %s", self.dir)
        self.t_saved = time.monotonic()

    def clear(self) -> None:
        if self.acc.is_main_process:
            shutil.rmtree(self.dir, ignore_errors=True)


def model_recipe(path: str | Path) -> str:
    """What identifies a base model across machines: a trained checkpoint's own fingerprint
    (its recipe, so a chain of rounds is identified by its data and settings), else the model
    directory's name (the embedded models' names hold their GGUF's hash)."""
    meta = Path(path) / TRAINING_RECORD
    if meta.exists():
        with contextlib.suppress(ValueError, KeyError):
            fp = json.loads(meta.read_text()).get("fingerprint")
            if fp:
                return fp
    return Path(path).name


def fingerprint(kind: str, base: str, hp: TrainHParams, data: Any) -> str:
    """A run's recipe: the kind, the base model's recipe, the settings and the tokenized data.
    A resumable state must match it; a checkpoint rebuilt from the same recipe is the same
    model (seeds are fixed), even where its bytes differ."""
    blob = json.dumps([kind, model_recipe(base), hp.fingerprint_fields(), data], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


# (model, batch, backward) → (loss value, tokens read, accuracy or None); it calls
# backward(loss) itself, once or once per part of a batch it splits
def train_result(
    kind: Literal["sft", "ppm"],
    out: Path,
    base: str,
    examples: int,
    meter: Meter,
    resumable: Resumable,
    hp: TrainHParams,
    params: tuple[int, int],
    **extra: Any,
) -> TrainResult:
    """What a finished run did, from its Meter (a collective call: every process makes it)."""
    tokens = meter.global_tokens()
    seconds = meter.seconds()
    return TrainResult(
        kind=kind,
        out_dir=str(out),
        base_model=str(base),
        examples=examples,
        optimizer_steps=meter.steps,
        tokens=tokens,
        seconds=round(seconds, 3),
        tokens_per_s=round(tokens / max(seconds, 1e-9), 1),
        final_loss=meter.step_losses[-1],
        step_losses=meter.step_losses,
        step_accuracies=meter.step_accuracies,
        trainable_params=params[0],
        total_params=params[1],
        resumed_from_step=meter.extra.get("resumed_from_step", 0),
        fingerprint=resumable.fingerprint,
        hparams=hp,
        **extra,
    )


LossFn = Callable[[Any, Any, Callable[[Any], None]], tuple[float, int, "float | None"]]


def train_loop(
    accelerator: Any,
    model: Any,
    optimizer: Any,
    batches: list[list[int]],
    collate: Callable[[list[int]], Any],
    hp: TrainHParams,
    what: str,
    loss_fn: LossFn,
    resumable: Resumable,
    before: Callable[[], dict[str, Any]] | None = None,
) -> Meter:
    """The loop both trainers share. `loss_fn(model, batch, backward)` computes the loss, calls
    `backward` on it (or on each part of a batch too big for one pass) and returns (loss value,
    tokens read, accuracy or None). `before()` runs once on a fresh start (e.g. the held-out
    figure of the starting model); what it returns is kept in `Meter.extra` across resumes."""
    acc = accelerator
    per_epoch = math.ceil(len(batches) / acc.num_processes)  # each process's share
    total = total_steps(per_epoch, hp)
    meter = Meter(acc, total, hp, what)
    acc.register_for_checkpointing(meter)
    if resumable.restore():
        log.info("%s: resumed at step %d/%d", what, meter.steps, total)
        meter.extra["resumed_from_step"] = meter.steps
    elif before is not None:
        meter.extra.update(before())
    model.train()
    while meter.steps < total:
        epoch, done = divmod(meter.micros, per_epoch)
        loader = epoch_loader(acc, batches, collate, hp.seed, epoch)
        if done:
            loader = acc.skip_first_batches(loader, done)
        for batch in loader:
            lr = lr_at(meter.steps, total, hp)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            with acc.accumulate(model):
                loss, tokens, accuracy = loss_fn(model, batch, acc.backward)
                if acc.sync_gradients:
                    acc.clip_grad_norm_(model.parameters(), hp.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            meter.micro(tokens, loss, accuracy)
            if acc.sync_gradients:
                meter.step(lr)
                if meter.steps >= total:
                    break
                resumable.maybe_save()
    model.eval()
    return meter


# --- checkpoints ---------------------------------------------------------------------------------


ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def save_adapter(peft_model: Any, out_dir: Path) -> Path:
    """The LoRA adapter (and a PPM's fully trained head) alone, in fp16: ~18 MB for the 0.5B
    model at rank 16, small enough to commit, so a fresh machine merges it onto the
    hash-checked base instead of training the round again. Written in peft's own layout
    (`PeftModel.from_pretrained` loads it)."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = get_peft_model_state_dict(peft_model)
    half = {k: v.detach().to(torch.float16).contiguous().cpu() for k, v in state.items()}
    save_file(half, str(out_dir / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    peft_model.peft_config["default"].save_pretrained(str(out_dir))
    return out_dir / ADAPTER_WEIGHTS


def check_checkpoint_dir(out_dir: str | Path, overwrite: bool) -> Path:
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
    checkpoint at `out_dir`. Every process must call this (FSDP gathers the weights). A LoRA
    model is merged first (after training: the adapters are gone from `model` too)."""
    out = Path(out_dir)
    lora = _is_peft(accelerator.unwrap_model(model))
    # full weights, gathered from every process; LoRA: merged into the base weights below
    state = None if lora else accelerator.get_state_dict(model)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            unwrapped = accelerator.unwrap_model(model)
            if lora:  # the adapter (committed), then a plain merged checkpoint both engines load
                save_adapter(unwrapped, tmp / ADAPTER_DIR)
                unwrapped = unwrapped.merge_and_unload()
            unwrapped.config.use_cache = True
            unwrapped.save_pretrained(tmp, state_dict=state, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            if meta is not None:
                (tmp / TRAINING_RECORD).write_text(meta.model_dump_json(indent=2))
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
        elif typing.get_origin(field.annotation) is Literal:
            ap.add_argument(
                flag,
                choices=typing.get_args(field.annotation),
                default=None,
                help=field.description,
            )
        else:
            kind = int if field.annotation in (int, int | None) else float
            ap.add_argument(flag, type=kind, default=None, help=field.description)


def hparams_from_args(args: argparse.Namespace) -> TrainHParams:
    given = {k: getattr(args, k) for k in TrainHParams.model_fields}
    return TrainHParams(**{k: v for k, v in given.items() if v is not None})


def trainer_main(
    train: Callable[..., TrainResult],
    record: type[Record],
    description: str,
    start: tuple[str, str],
) -> None:
    """The command line both trainers have: DATA (JSONL of `record`) and OUT, the model they
    start from (`start`: its flag and help), --overwrite and every hyper-parameter; the
    result printed once, as JSON."""
    from models.default_model import resolve_model

    flag, help_text = start
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("data", help=f"JSONL of search.extract.{record.__name__}")
    ap.add_argument("out", help="checkpoint directory to write")
    ap.add_argument(flag, dest="start", metavar=flag[2:].upper(), default="default", help=help_text)
    ap.add_argument("--overwrite", action="store_true")
    add_hparam_args(ap)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    model, data = resolve_model(args.start), read_jsonl(args.data, record)
    result = train(model, data, args.out, hparams_from_args(args), args.overwrite)
    if int(os.environ.get("RANK", "0")) == 0:  # once under `accelerate launch`
        print(result.model_dump_json(exclude={"step_losses", "step_accuracies"}, indent=2))
