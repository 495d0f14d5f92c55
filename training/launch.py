"""Phases 3 and 4, sft and ppm: the new policy, then a PPM initialised from it.

Each runs `python -m training.sft` / `python -m training.ppm_train` as a child process under the
round's launcher (this Python by default; `accelerate launch --num_processes 8` or `torchrun`
for several GPUs): the generation engine's memory is not the trainer's, a training crash
cannot take the round's record with it, and multi-GPU training needs no other code path. The
child writes its checkpoint atomically (training/common.py's `save_checkpoint`), in the
standard HF format both engines load, with `rstar-train.json` beside it; its output goes to
stderr and to `logs/<phase>.log`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

from training.allocator import AllocatorSettings, preload_env
from training.common import TRAINING_RECORD, TrainHParams, TrainResult

POLICY = Path("policy")
PPM = Path("ppm")
LOGS = Path("logs")


class TrainError(RuntimeError):
    """The trainer exited with an error; the message holds its last lines and the log."""


def hparam_flags(hp: TrainHParams) -> list[str]:
    """TrainHParams as training/common.py's flags."""
    out: list[str] = []
    for name, value in hp.model_dump().items():
        flag = "--" + name.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            out.append(flag if value else f"--no-{name.replace('_', '-')}")
        else:
            out += [flag, str(value)]
    return out


def launcher_argv(launcher: str | None) -> list[str]:
    return shlex.split(launcher) if launcher else [sys.executable]


def train_command(
    kind: str, data: Path, out: Path, init: str, hp: TrainHParams, launcher: str | None
) -> list[str]:
    sft = kind == "sft"
    module, init_flag = ("training.sft", "--base") if sft else ("training.ppm_train", "--init")
    return [
        *launcher_argv(launcher),
        "-m",
        module,
        str(data),
        str(out),
        init_flag,
        init,
        "--overwrite",
        *hparam_flags(hp),
    ]


def run_trainer(cmd: list[str], log_path: Path, echo: Any = None) -> None:
    """Run `cmd`, its output line by line to `echo` (stderr) and `log_path`."""
    echo = echo or sys.stderr
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = preload_env(
        AllocatorSettings().train_allocator,
        {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"},
    )
    tail: deque[str] = deque(maxlen=15)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()
                echo.write(line)
                tail.append(line.rstrip())
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if rc != 0:
        last = "\n".join(f"    {t}" for t in tail)
        raise TrainError(
            f"`{shlex.join(cmd[:4])} …` exited with status {rc}; last lines:\n"
            f"{last}\n  (whole log: {log_path})"
        )


def train(
    kind: str,
    round_dir: Path,
    data: Path,
    init: str,
    hp: TrainHParams,
    launcher: str | None,
    log_name: str | None = None,
) -> TrainResult:
    """Train the policy (`sft`, from `init`) or the PPM (`ppm`, a fresh head on `init`'s
    backbone) on `data`; return what the trainer recorded in the checkpoint. The output goes to
    `logs/<log_name or kind>.log`."""
    out = round_dir / (POLICY if kind == "sft" else PPM)
    cmd = train_command(kind, data, out, init, hp, launcher)
    run_trainer(cmd, round_dir / LOGS / f"{log_name or kind}.log")
    meta = out / TRAINING_RECORD
    if not meta.exists():
        raise TrainError(f"the trainer finished but wrote no checkpoint at {out}")
    return TrainResult.model_validate_json(meta.read_text())


def result_counts(r: TrainResult) -> dict[str, Any]:
    return {
        "examples": r.examples,
        "skipped_too_long": r.skipped,
        "optimizer_steps": r.optimizer_steps,
        "tokens": r.tokens,
        "tokens_per_s": r.tokens_per_s,
        "train_seconds": r.seconds,
        "first_loss": r.step_losses[0] if r.step_losses else None,
        "final_loss": r.final_loss,
        **({"final_accuracy": r.step_accuracies[-1]} if r.step_accuracies else {}),
        **({"heldout": r.heldout.model_dump()} if r.heldout else {}),
        "lora_rank": r.hparams.lora_rank,
        "trainable_params": r.trainable_params,
        "resumed_from_step": r.resumed_from_step,
        "base_model": r.base_model,
    }
