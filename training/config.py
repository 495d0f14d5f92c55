"""A round's configuration: one pydantic model, from a JSON/TOML file and/or flags.

Precedence: defaults < `--config FILE` < flags. Every field has a flag, generated from the
model: top-level fields by name (`--policy`, `--ppm`, `--engine`), the search budget without a
prefix (`--rollouts`, `--candidates`, `--max-depth`, `--parallel`, `--concurrency`), the
training hyper-parameters with `--sft-`, `--ppm-` or, for both at once, `--train-`
(`--train-max-steps 2`, `--ppm-lr 1e-5`), the evaluation with `--eval-`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.settings import PolicyEngine, RewardEngine
from search import ALGORITHMS
from search.config import SearchSettings
from search.extract import LabelRules
from search.steps import PromptStyle
from training.common import TrainHParams, drop_added_later

Phase = Literal["generate", "extract", "sft", "ppm", "eval"]
PHASES: tuple[Phase, ...] = ("generate", "extract", "sft", "ppm", "eval")
PHASE_ALIASES: dict[str, tuple[Phase, ...]] = {"train": ("sft", "ppm"), "all": PHASES}
# What each phase needs finished (complete or skipped) before it can run.
REQUIRES: dict[Phase, tuple[Phase, ...]] = {
    "generate": (),
    "extract": ("generate",),
    "sft": ("extract",),
    "ppm": ("extract", "sft"),
    "eval": ("sft", "ppm"),
}

# the phase a setting (a top-level field or section) first acts on; unlisted: generate
SETTING_PHASE: dict[str, Phase] = {
    "top_k": "extract", "final_pairs": "extract", "supported_only": "extract",
    "label_q": "extract", "q_margin": "extract", "min_edit_chars": "extract",
    "check_claims": "extract", "sft": "sft", "ppm_train": "ppm", "ppm_method": "ppm",
    "ppm_dev_trees": "ppm", "eval": "eval", "base_model": "sft",
}  # fmt: skip

# settings added after recorded rounds (docs/measured/evolution/): name → default
# (the label rules' ADDED_LATER values are the old behaviour, their defaults the reference's: a
# round recorded before them states the old values in its config)
ADDED_LATER: dict[str, Any] = {
    "supported_only": True, "search.unsolved_rollouts": None,
    "label_q": "search", "q_margin": None, "min_edit_chars": 0, "check_claims": False,
    "ppm_method": "lora", "ppm_dev_trees": None,
    # the search settings a round had no field for until it shared the search's own
    "search.virtual_loss": 1.0, "search.top_p": 1.0, "search.answer_max_tokens": 64,
    "search.exec_timeout_s": 10.0, "search.output_clip_chars": 1024,
    "search.final_choice": "weighted_vote", "search.vote_top_k": None,
    "search.particle_temperature": 1.0, "search.max_expansions": 1,
}  # fmt: skip
# what a Kubernetes Indexed Job sets in each pod: the pod's index, 0 … completions-1
COMPLETION_INDEX = "JOB_COMPLETION_INDEX"
# names the identity keeps from the rounds recorded before the search settings were shared
IDENTITY_NAMES = {"parallel_rollouts": "parallel"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RoundSearch(SearchSettings):
    """MCTS over the training problems (the gold answer is the terminal reward): the search
    settings every search uses, and a round's budget and pace."""

    model_config = ConfigDict(extra="forbid")

    rollouts: int = Field(16, ge=1, description="MCTS rollouts per problem")
    concurrency: int = Field(8, ge=1, description="problems searched at once on the one engine")
    max_tokens: int | None = Field(None, ge=1, description="generated tokens per problem")
    time_limit_s: float | None = Field(None, gt=0, description="wall-clock seconds per problem")
    max_failure_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of problems whose search may fail and the phase still completes "
        "(failed ones are retried by a re-run otherwise)",
    )

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        """Configs written before the settings were shared call parallel_rollouts parallel."""
        if isinstance(data, dict) and "parallel" in data and "parallel_rollouts" not in data:
            data = {("parallel_rollouts" if k == "parallel" else k): v for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _more_than_rollouts(self) -> RoundSearch:
        if self.unsolved_rollouts is not None and self.unsolved_rollouts <= self.rollouts:
            raise ValueError(
                f"unsolved_rollouts ({self.unsolved_rollouts}) must exceed rollouts "
                f"({self.rollouts}): it is how far an unsolved problem's search may go on"
            )
        return self


class EvalSettings(_Section):
    """Held-out evaluation of the new checkpoints against the round's inputs."""

    data: str | None = Field(None, description="JSONL problems with answers; unset = no eval")
    limit: int | None = Field(100, ge=1, description="first N problems (after offset)")
    offset: int = Field(0, ge=0)
    algorithms: list[str] = Field(["greedy", "mcts"], description="comma-separated")
    rollouts: int = Field(8, ge=1, description="budget of the non-greedy algorithms")
    candidates: int | None = Field(None, ge=1, description="default: the round's")
    max_depth: int | None = Field(None, ge=1, description="default: the round's")
    max_tokens: int | None = Field(None, ge=1, description="generated tokens per search")
    time_limit_s: float | None = Field(None, gt=0)
    concurrency: int = Field(4, ge=1, description="problems searched at once")
    previous: bool = Field(True, description="also evaluate the round's input models")
    engine: PolicyEngine | None = Field(
        None, description="policy engine for the eval (default: the round's; vllm if remote)"
    )

    @field_validator("algorithms")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if a not in ALGORITHMS]
        if bad or not v:
            raise ValueError(f"unknown algorithm(s) {bad}; choose from {', '.join(ALGORITHMS)}")
        return v


class RoundConfig(_Section):
    """One round of self-evolution: generate → extract → sft → ppm → eval."""

    out: str = Field(description="the round's directory")
    round: int | None = Field(None, ge=0, description="round number, for the record")
    problems: str | None = Field(None, description="JSONL training problems with gold answers")
    bootstrap: Literal["gsm8k"] | None = Field(
        None, description="round 0: GSM8K reference solutions instead of MCTS"
    )
    limit: int | None = Field(None, ge=1, description="first N problems (after offset)")
    offset: int = Field(0, ge=0)
    policy: str = Field("default", description="current policy: path, hub id, or 'default'")
    ppm: str | None = Field(None, description="current PPM (unset: terminal-guided Q only)")
    base_model: str | None = Field(
        None, description="model the SFT starts from (default: --policy)"
    )
    engine: PolicyEngine = Field("vllm", description="policy engine for generation")
    policy_url: str | None = Field(None, description="OpenAI-compatible server (engine remote)")
    ppm_engine: RewardEngine = Field("transformers", description="PPM engine")
    ppm_url: str | None = Field(None, description="vLLM pooling server (ppm_engine remote)")
    prompt_style: PromptStyle | None = Field(
        None, description="default: few_shot for an embedded model, else bare"
    )
    max_model_len: int | None = Field(None, ge=256, description="engine context (RSTAR_*)")
    cpu_kv_cache_gb: float | None = Field(None, gt=0)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    search: RoundSearch = Field(default_factory=RoundSearch)
    top_k: int = Field(2, ge=1, description="SFT trajectories per problem; pairs: k×k per step")
    final_pairs: bool = Field(True, description="also final-answer pairs (paper's relaxation)")
    supported_only: bool = Field(
        True, description="credit a correct answer only if its code printed it (SFT and pairs)"
    )
    label_q: Literal["outcomes", "search"] = Field(
        "outcomes", description=LabelRules.model_fields["q"].description
    )
    q_margin: float | None = Field(
        0.5, ge=0, description=LabelRules.model_fields["q_margin"].description
    )
    min_edit_chars: int = Field(
        20, ge=0, description=LabelRules.model_fields["min_edit_chars"].description
    )
    check_claims: bool = Field(
        True, description=LabelRules.model_fields["check_claims"].description
    )
    sft: TrainHParams = Field(default_factory=TrainHParams)
    ppm_train: TrainHParams = Field(default_factory=TrainHParams)
    ppm_method: Literal["lora", "head"] = Field(
        "lora",
        description="the PPM: LoRA on the new policy's backbone (--ppm-* settings), or a "
        "linear head fitted on its frozen features (minutes, not hours, on CPU)",
    )
    ppm_dev_trees: str | None = Field(
        None, description="head PPM: trees of problems no model trained on, to report it on"
    )
    launcher: str | None = Field(
        None,
        description="command training runs under, e.g. 'accelerate launch "
        "--num_processes 8' (default: this Python)",
    )
    eval: EvalSettings = Field(default_factory=EvalSettings)
    phases: list[Phase] = Field(list(PHASES), description="phases to run this time")
    force_phase: list[Phase] = Field(
        [], description="re-run these finished phases (and so every later one)"
    )
    shard: str | None = Field(
        None,
        description="generate only shard I of N ('I/N', from 0; 'auto/N' takes I from "
        f"${COMPLETION_INDEX}) into generate/shards/, for a --merge-shards N run to join",
    )
    merge_shards: int | None = Field(
        None, ge=1, description="generate by joining N finished shards instead of searching"
    )

    @field_validator("shard")
    @classmethod
    def _shard(cls, v: str | None) -> str | None:
        if v is None:
            return None
        index, _, count = v.partition("/")
        if index == "auto":
            index = os.environ.get(COMPLETION_INDEX, "")
            if not index:
                raise ValueError(f"'auto/N' needs ${COMPLETION_INDEX} (set by an Indexed Job)")
        if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
            raise ValueError(f"{v!r}: expected I/N with 0 <= I < N, e.g. 0/4, or auto/N")
        return f"{int(index)}/{int(count)}"

    @model_validator(mode="after")
    def _sharding(self) -> RoundConfig:
        if self.shard is None and self.merge_shards is None:
            return self
        if self.shard is not None and self.merge_shards is not None:
            raise ValueError("shard and merge_shards: a run either generates a shard or joins them")
        if self.bootstrap:
            raise ValueError("the bootstrap round searches nothing: it takes no shards")
        if self.shard is not None:
            if "phases" in self.model_fields_set and self.phases != ["generate"]:
                raise ValueError("shard: a shard runs the generate phase only (--phases generate)")
            if self.force_phase:
                raise ValueError("shard: a shard has no phases to force; delete its files")
            self.phases = ["generate"]
        return self

    def shard_spec(self) -> tuple[int, int] | None:
        """(I, N) of a shard run."""
        if self.shard is None:
            return None
        index, count = self.shard.split("/")
        return int(index), int(count)

    @field_validator("phases", "force_phase", mode="before")
    @classmethod
    def _expand(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [x.strip() for x in v.split(",") if x.strip()]
        if isinstance(v, list):
            out: list[Any] = []
            for x in v:
                for p in PHASE_ALIASES.get(x, (x,)):
                    if p not in out:
                        out.append(p)
            return sorted(out, key=lambda p: PHASES.index(p) if p in PHASES else -1)
        return v

    def label_rules(self) -> LabelRules:
        """The extraction's rules: the fields of the same names, and `label_q` as its `q`."""
        same = set(LabelRules.model_fields) - {"q"}
        return LabelRules(q=self.label_q, **self.model_dump(include=same))

    # --- identity ------------------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same round: everything but how and what part of it runs
        (output dir, phases, shards, engines and their memory, concurrency, the training launcher).
        A setting added after rounds were recorded is left out while at its default, so that
        those rounds keep their identity (its default must therefore never change)."""
        ident = self.model_dump(
            mode="json",
            exclude={
                "out": True, "phases": True, "force_phase": True, "launcher": True,
                "shard": True, "merge_shards": True,
                "engine": True, "policy_url": True, "ppm_engine": True, "ppm_url": True,
                "max_model_len": True, "cpu_kv_cache_gb": True, "gpu_memory_utilization": True,
                "search": {"concurrency"}, "eval": {"concurrency", "engine"},
                "sft": True, "ppm_train": True,
            },
        )  # fmt: skip
        ident["search"] = {IDENTITY_NAMES.get(k, k): v for k, v in ident["search"].items()}
        ident["sft"] = self.sft.fingerprint_fields()
        ident["ppm_train"] = self.ppm_train.fingerprint_fields()
        return drop_added_later(ident, ADDED_LATER)

    def identity_sha256(self) -> str:
        return _digest(self.identity())

    def generation_sha256(self) -> str:
        """The part of the identity the generate phase reads: shards of one round must agree
        on it, not on how their trees will be labelled, trained on or evaluated."""
        ident = self.identity()
        return _digest({k: v for k, v in ident.items() if SETTING_PHASE.get(k) is None})


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def first_phase_changed(keys: list[str]) -> Phase:
    """The first phase whose result depends on one of these (dotted) settings: re-running it
    and every later phase is what changing them takes."""
    return min(
        (SETTING_PHASE.get(k.split(".")[0], "generate") for k in keys),
        key=PHASES.index,
        default="generate",
    )


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON-like dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


# --- the command line ----------------------------------------------------------------------------

# nested sections: (field, flag prefix); "train" sets sft and ppm_train at once
SECTIONS = {"search": "", "sft": "sft-", "ppm_train": "ppm-", "eval": "eval-"}
_SHARED = "train"


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(type without None, optional?)"""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _or_none(kind: type) -> Any:
    """A number, or "none" for an optional setting left unset."""

    def parse(text: str) -> Any:
        return None if text.strip().lower() == "none" else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its errors
    return parse


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _add_model_flags(group: Any, model: type[BaseModel], dest: str, flag: str) -> None:
    for name, field in model.model_fields.items():
        kind, optional = _unwrap(field.annotation)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            continue  # sections get their own groups
        named = getattr(model, "FLAGS", {}).get(name, name)  # --parallel: parallel_rollouts
        opt = "--" + flag + named.replace("_", "-")
        kw: dict[str, Any] = {"dest": f"{dest}{name}", "default": argparse.SUPPRESS}
        help_text = field.description or ""
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is Literal:
            kw["choices"] = list(typing.get_args(kind))
        elif typing.get_origin(kind) is list:
            kw["type"] = _csv
            kw["metavar"] = "A,B"
        elif kind in (int, float):
            kw["type"] = _or_none(kind) if optional else kind
            kw["metavar"] = named.upper()
        else:
            kw["type"] = str
            kw["metavar"] = named.upper()
        shown = field.default_factory is None and field.default is not None
        if shown and kind is not bool and not field.is_required():
            help_text += f" (default {field.default})"
        group.add_argument(opt, help=help_text.strip() or None, **kw)


def add_config_flags(ap: argparse.ArgumentParser) -> None:
    _add_model_flags(ap.add_argument_group("round"), RoundConfig, "", "")
    titles = {
        "search": "search budget (generation)",
        "sft": "policy SFT",
        "ppm_train": "PPM training",
        "eval": "evaluation",
    }
    for section, prefix in SECTIONS.items():
        model = RoundConfig.model_fields[section].annotation
        _add_model_flags(ap.add_argument_group(titles[section]), model, f"{section}.", prefix)
    _add_model_flags(
        ap.add_argument_group("training, both SFT and PPM (--sft-*/--ppm-* win)"),
        TrainHParams,
        f"{_SHARED}.",
        f"{_SHARED}-",
    )


class ConfigError(ValueError):
    """The configuration cannot be used (unreadable file, unknown or invalid field)."""


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"--config {path}: {e.strerror or e}") from None
    try:
        data = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {path}: not valid {path.suffix[1:] or 'JSON'} ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected an object at the top level")
    return data


def build_config(args: argparse.Namespace) -> RoundConfig:
    """Defaults < --config file < flags."""
    from pydantic import ValidationError

    data: dict[str, Any] = read_config_file(args.config) if getattr(args, "config", None) else {}
    given = {k: v for k, v in vars(args).items() if k not in ("config", "print_config")}
    shared = {k.split(".", 1)[1]: v for k, v in given.items() if k.startswith(f"{_SHARED}.")}
    for section in ("sft", "ppm_train"):
        if shared:
            sec = data.setdefault(section, {})
            if not isinstance(sec, dict):
                raise ConfigError(f"--config: {section!r} must be an object")
            sec.update(shared)
    for key, value in given.items():
        if key.startswith(f"{_SHARED}."):
            continue
        if "." in key:
            section, name = key.split(".", 1)
            sec = data.setdefault(section, {})
            if not isinstance(sec, dict):
                raise ConfigError(f"--config: {section!r} must be an object")
            sec[name] = value
        else:
            data[key] = value
    try:
        return RoundConfig.model_validate(data)
    except ValidationError as e:
        lines = [
            f"  {'.'.join(str(x) for x in err['loc']) or '(top level)'}: {err['msg']}"
            for err in e.errors()
        ]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None
