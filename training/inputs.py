"""Checking a round's inputs before any compute: problem files, models, the output directory.

Everything here only reads. A problem raises `InputError` with a message that names the file
(and line) or the flag and what is wrong; the command line turns it into exit status 2.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.problems import file_sha256
from training.config import (
    PHASES,
    REQUIRES,
    Phase,
    RoundConfig,
    diff_keys,
    first_phase_changed,
)
from training.manifest import (
    DONE,
    FORMAT,
    InputRecord,
    Manifest,
    dir_sha256,
)

log = logging.getLogger("rstar.round")

GSM8K_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k_train.jsonl"


class InputError(ValueError):
    """A round cannot start: bad data, a model path that is not a model, a clash with the
    round already in the output directory."""


@dataclass
class Inputs:
    """What preflight found: the problems (and raw rows for the bootstrap), the records."""

    problems: list[Any]  # evaluation.Problem
    rows: list[dict[str, Any]]  # bootstrap: the raw GSM8K rows of `problems`
    eval_problems: list[Any] | None
    records: dict[str, InputRecord] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)  # settings changed since the last run


# --- problem files -------------------------------------------------------------------------------


def problems_path(cfg: RoundConfig) -> Path:
    if cfg.problems:
        return Path(cfg.problems)
    if cfg.bootstrap == "gsm8k":
        if GSM8K_TRAIN.is_file():
            return GSM8K_TRAIN
        raise InputError(f"--bootstrap gsm8k: {GSM8K_TRAIN} not found; pass --problems FILE")
    raise InputError("no training problems: pass --problems FILE (JSONL with gold answers)")


def load_training_problems(cfg: RoundConfig) -> tuple[list[Any], list[dict[str, Any]], Path]:
    """The selected problems, checked in full (every bad row reported as file:line); for the
    bootstrap also their raw rows, each of which must carry a reference solution."""
    from evaluation import DataError, load_problems

    path = problems_path(cfg)
    try:
        problems = load_problems(path, offset=cfg.offset, limit=cfg.limit)
    except DataError as e:
        raise InputError(str(e)) from None
    rows: list[dict[str, Any]] = []
    if cfg.bootstrap:
        lines = path.read_text(encoding="utf-8").split("\n")
        errors = []
        for p in problems:
            row = json.loads(lines[p.line - 1])
            solution = row.get("solution")
            if not isinstance(solution, str) or not solution.strip():
                answer = row.get("answer")
                if not (isinstance(answer, str) and "####" in answer):
                    errors.append(
                        f"{path}:{p.line}: no reference solution (a 'solution' field, or an "
                        "'answer' holding the solution and '#### gold')"
                    )
                    continue
            rows.append({**row, "id": p.id})
        if errors:
            more = f"\n… and {len(errors) - 10} more" if len(errors) > 10 else ""
            raise InputError(
                f"{path}: {len(errors)} row(s) cannot be bootstrapped:\n"
                + "\n".join(errors[:10])
                + more
            )
    return problems, rows, path


def load_eval_problems(cfg: RoundConfig) -> tuple[list[Any] | None, Path | None]:
    from evaluation import DataError, load_problems

    if not cfg.eval.data:
        return None, None
    path = Path(cfg.eval.data)
    try:
        return load_problems(path, offset=cfg.eval.offset, limit=cfg.eval.limit), path
    except DataError as e:
        raise InputError(f"--eval-data: {e}") from None


# --- models --------------------------------------------------------------------------------------


def check_model(
    given: str | None, flag: str, *, remote: bool = False, ppm: bool = False
) -> InputRecord:
    """A local model directory must hold a loadable config, weights and a tokenizer (a PPM:
    a one-label sequence classifier). Hub ids pass as they are; remote models are not read."""
    from models.checks import ModelCheckError
    from models.checks import check_model as check_dir
    from models.factory import model_version
    from training.common import TRAINING_RECORD, model_recipe

    if remote:
        return InputRecord(kind="remote", given=given)
    try:
        kind, path = check_dir(given, flag, ppm=ppm)
    except ModelCheckError as e:
        raise InputError(str(e)) from None
    if kind == "hub" or path is None:
        return InputRecord(kind="hub", given=given)
    return InputRecord(
        kind="model",
        given=given,
        path=str(path.resolve()),
        version=model_version(str(path)),
        recipe=model_recipe(path) if (path / TRAINING_RECORD).exists() else None,
    )


def _hash_inputs(records: dict[str, InputRecord], previous: Manifest | None) -> None:
    """sha256 of every local input; a model directory's is reused from the previous run when
    its version (file names, sizes, times) has not changed."""
    for name, rec in records.items():
        if rec.path is None or rec.kind not in ("file", "model"):
            continue
        old = previous.inputs.get(name) if previous else None
        if (
            rec.kind == "model"
            and old is not None
            and old.sha256
            and (old.path, old.version) == (rec.path, rec.version)
        ):
            rec.sha256 = old.sha256
        elif rec.kind == "model":
            rec.sha256 = dir_sha256(Path(rec.path))
        else:
            rec.sha256 = file_sha256(Path(rec.path))


# --- the whole check -----------------------------------------------------------------------------


def check_phases(cfg: RoundConfig, manifest: Manifest | None) -> None:
    """Every phase asked for must have its prerequisites finished, or run before it now."""
    forced = set(cfg.force_phase)
    first_forced = min((PHASES.index(p) for p in forced), default=len(PHASES))
    will_run: set[Phase] = set()
    for p in PHASES:
        done = manifest is not None and manifest.done(p) and PHASES.index(p) < first_forced
        if p in cfg.phases and not done:
            will_run.add(p)
        if p not in cfg.phases:
            continue
        for req in REQUIRES[p]:
            ok = req in will_run or (
                manifest is not None and manifest.done(req) and PHASES.index(req) < first_forced
            )
            if not ok:
                raise InputError(
                    f"phase {p} needs {req} finished first: add it to --phases "
                    f"(now {','.join(cfg.phases)})"
                )
    bad = forced - set(cfg.phases)
    if bad:
        raise InputError(f"--force-phase {','.join(sorted(bad))}: not among --phases")


def check_round_dir(cfg: RoundConfig) -> tuple[Manifest | None, list[str]]:
    """An output directory may hold this round (same identity and inputs), or this round with
    new settings for phases that have not run (`settings_may_change`), nothing else. Returns
    its manifest and the settings that changed."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    try:
        prev = Manifest.load(out)
    except (ValueError, OSError) as e:
        raise InputError(f"--out {out}: its manifest.json is unreadable ({e})") from None
    if prev is None:
        return None, []
    if prev.format != FORMAT:
        raise InputError(f"--out {out}: holds a {prev.format!r} manifest, not {FORMAT!r}")
    if prev.identity_sha256 != cfg.identity_sha256():
        try:
            keys = diff_keys(RoundConfig.model_validate(prev.config).identity(), cfg.identity())
        except ValueError:
            keys = []
        if keys and (why := settings_may_change(cfg, prev, keys)) is None:
            log.info(
                "--out %s: settings changed for phases not finished yet: %s", out, ", ".join(keys)
            )
            return prev, keys
        shown = ", ".join(keys) or "(unreadable old config)"
        raise InputError(
            f"--out {out}: holds another round (its configuration differs in: {shown}); "
            f"{why or ''}use another --out, or the same configuration to resume it"
        )
    return prev, []


# phases whose partial results (trees, eval rows) are kept without their settings: resuming
# them with new ones would mix the two (training resumes only from a state of the same recipe)
KEEPS_PARTIAL: tuple[Phase, ...] = ("generate", "eval")


def settings_may_change(cfg: RoundConfig, prev: Manifest, keys: list[str]) -> str | None:
    """None when changing these settings of a recorded round mixes or redoes nothing: the
    phases they act on and every later one are not done, nor partly done where that is kept,
    or --force-phase re-runs them (a stopped or failed training can be tried again with new
    settings). Else why not."""
    first = PHASES.index(first_phase_changed(keys))
    forced = min((PHASES.index(p) for p in cfg.force_phase), default=len(PHASES))
    done = [p for p in PHASES[first:forced] if prev.done(p)]
    partial = [
        p
        for p in PHASES[first:forced]
        if p in KEEPS_PARTIAL and not prev.done(p) and prev.phases[p].status != "pending"
    ]
    if not done and not partial:
        return None
    why = [f"{', '.join(done)} finished"] if done else []
    why += [f"{', '.join(partial)} partly ran"] if partial else []
    return (
        f"{' and '.join(why)} with the old settings (--force-phase {PHASES[first]} "
        "re-runs from the first phase they change); "
    )


def check_input_hashes(cfg: RoundConfig, records: dict[str, InputRecord], prev: Manifest) -> None:
    for name, rec in records.items():
        old = prev.inputs.get(name)
        if old is not None and old.sha256 and rec.sha256 and old.sha256 != rec.sha256:
            if old.recipe and old.recipe == rec.recipe:
                log.info(
                    "input %s (%s) was rebuilt from the same recipe: accepted", name, rec.given
                )
                rec.sha256 = old.sha256  # keeps standing for the model this round read
                continue
            raise InputError(
                f"--out {cfg.out}: input {name} ({rec.given}) changed since this round started "
                f"(sha256 {old.sha256[:12]}… now {rec.sha256[:12]}…); use another --out"
            )


def preflight(cfg: RoundConfig) -> tuple[Inputs, Manifest | None]:
    """Read and check everything a run needs; raise InputError before any compute."""
    if cfg.bootstrap and cfg.ppm:
        raise InputError("--bootstrap round 0 takes no --ppm (it trains the first policy)")
    if cfg.engine == "remote" and not cfg.policy_url:
        raise InputError("--engine remote needs --policy-url (an OpenAI-compatible server)")
    if cfg.ppm_engine == "remote" and not cfg.ppm_url:
        raise InputError("--ppm-engine remote needs --ppm-url (a vLLM pooling server)")
    if cfg.ppm_engine == "remote" and not cfg.ppm:
        raise InputError("--ppm-engine remote needs --ppm (the served model's name)")
    engines = {cfg.engine, cfg.eval.engine or cfg.engine}
    if cfg.ppm:
        engines.add(cfg.ppm_engine)
    if "vllm" in engines and importlib.util.find_spec("vllm") is None:
        raise InputError(
            "engine vllm: vLLM is not installed (pip install -e '.[cpu]' or "
            "'.[gpu]'), or pass --engine transformers"
        )
    # a shard neither reads nor writes the manifest: the merge checks it against the round
    prev, changed = check_round_dir(cfg) if cfg.shard is None else (None, [])
    check_phases(cfg, prev)

    problems, rows, ppath = load_training_problems(cfg)
    records: dict[str, InputRecord] = {
        "problems": InputRecord(
            kind="file", given=str(ppath), path=str(ppath.resolve()), rows=len(problems)
        ),
    }
    eval_problems, epath = load_eval_problems(cfg)
    if epath is not None and eval_problems is not None:
        records["eval_data"] = InputRecord(
            kind="file", given=str(epath), path=str(epath.resolve()), rows=len(eval_problems)
        )
    gen_remote = cfg.engine == "remote"
    records["policy"] = check_model(cfg.policy, "--policy", remote=gen_remote)
    if cfg.ppm:
        records["ppm"] = check_model(cfg.ppm, "--ppm", remote=cfg.ppm_engine == "remote", ppm=True)
    if cfg.base_model:
        records["base_model"] = check_model(cfg.base_model, "--base-model")
    elif gen_remote and any(p in cfg.phases for p in ("sft", "ppm")):
        pol = records["policy"]
        if not Path(cfg.policy).is_dir():
            raise InputError(
                f"--engine remote: the policy {pol.given!r} is served elsewhere; training needs "
                "its weights here: pass --base-model PATH"
            )
        records["base_model"] = check_model(cfg.policy, "--policy")
    _hash_inputs(records, prev)
    if prev is not None:
        check_input_hashes(cfg, records, prev)
    return Inputs(problems, rows, eval_problems, records, changed), prev


# phases whose outputs are weights, which are not kept with the round's small artefacts: a
# finished one whose outputs are gone is trained again from its recorded data and settings
REBUILT = ("sft", "ppm")


def missing_outputs(manifest: Manifest, out: Path, phase: Phase) -> list[str]:
    """A complete weight phase's checkpoints that are not on disk (nothing for other phases):
    a directory holding only its training record (rstar-train.json, which is kept) counts."""
    rec = manifest.phases[phase]
    if phase not in REBUILT or rec.status != "complete":
        return []
    return [o for o in rec.outputs if not (out / o / "config.json").exists()]


def phase_order(
    cfg: RoundConfig, manifest: Manifest, out: Path | None = None
) -> list[tuple[Phase, str | None]]:
    """(phase, why it is skipped or None) for every phase asked for, in order. A finished
    phase is skipped, unless it is forced or (with `out`) its weights are missing."""
    forced = set(cfg.force_phase)
    first_forced = min((PHASES.index(p) for p in forced), default=len(PHASES))
    plan: list[tuple[Phase, str | None]] = []
    for p in PHASES:
        if p not in cfg.phases:
            continue
        rec = manifest.phases[p]
        gone = out is not None and missing_outputs(manifest, out, p)
        if rec.status in DONE and PHASES.index(p) < first_forced and not gone:
            plan.append((p, f"already {rec.status}"))
        else:
            plan.append((p, None))
    return plan
