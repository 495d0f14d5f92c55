"""One round, end to end: check the inputs, then run the phases asked for, recording each.

    preflight (exit 2 on bad input, before any compute)
    → generate (MCTS with gold answers; or the GSM8K bootstrap in round 0)
    → extract (SFT trajectories, PPM pairs, counts)
    → sft (the new policy) → ppm (a PPM from the new policy)
    → eval (new vs previous on a held-out set)

A phase already complete (or skipped, with its reason) in the manifest is not run again unless
`--force-phase` names it, which re-runs it and every later phase. A phase that fails leaves the
earlier phases' outputs as they were; the manifest says which phase failed and why.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.config import (
    PHASES,
    ConfigError,
    Phase,
    RoundConfig,
    add_config_flags,
    build_config,
)
from training.generate import GenerateError
from training.inputs import InputError, Inputs, missing_outputs, phase_order, preflight
from training.launch import TrainError
from training.manifest import (
    Manifest,
    PhaseRecord,
    RoundBusy,
    now,
    remove_temp_dirs,
    round_lock,
)

log = logging.getLogger("rstar.round")


@dataclass
class Outcome:
    status: str = "complete"  # or "skipped"
    reason: str | None = None
    outputs: list[str] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)


class Round:
    """Runs a checked configuration. `components` (tests only): search components to use for
    generation and evaluation instead of loading the configured models."""

    def __init__(self, cfg: RoundConfig, inputs: Inputs, *, components: Any = None) -> None:
        self.cfg = cfg
        self.inputs = inputs
        self.out = Path(cfg.out)
        self.components = components
        self.m = Manifest()
        self.rebuilding = False  # a rebuild's trainer logs beside the recorded run's, not over it

    # --- the run ---------------------------------------------------------------------------------

    def run(self) -> int:
        if (spec := self.cfg.shard_spec()) is not None:
            return self._run_shard(*spec)
        with round_lock(self.out):
            return self._run()

    def _run_shard(self, index: int, count: int) -> int:
        """Generate one shard (training/shards.py): its own lock and record, no manifest."""
        from training import shards
        from training.generate import GenerateError

        trees = shards.shard_trees(self.out, index, count)
        mine = shards.shard_problems(self.inputs.problems, index, count)
        rec = shards.ShardRecord(
            index=index,
            count=count,
            generation_sha256=self.cfg.generation_sha256(),
            inputs=self._generation_inputs(),
            problems=len(mine),
            started=now(),
        )
        with round_lock(trees.parent, f".{trees.stem}.lock", f"shard {index}/{count}"):
            try:
                old = shards.read_shard_record(self.out, index, count)
                shards.check_resumable(old, rec)
            except (GenerateError, ValueError) as e:
                log.error("%s", e)
                return 2
            if old is not None and old.status == "complete" and trees.exists():
                log.info("shard %d/%d: already complete (%s)", index, count, trees)
                return 0
            shards.write_shard_record(self.out, rec)
            n = len(self.inputs.problems)
            log.info("shard %d/%d: %d of the round's %d problems", index, count, len(mine), n)
            try:
                counts = asyncio.run(self._generate_async(mine, trees))
            except KeyboardInterrupt:
                return 130
            except GenerateError as e:
                log.error("shard %d/%d failed: %s", index, count, e)
                return 1
            rec.status, rec.finished, rec.counts = "complete", now(), counts.summary()
            shards.write_shard_record(self.out, rec)
            log.info("shard %d/%d: complete, %s", index, count, trees)
            return 0

    def _generation_inputs(self) -> dict[str, str | None]:
        """The inputs' hashes a shard's trees depend on."""
        keep = ("problems", "policy", "ppm")
        return {k: r.sha256 for k, r in self.inputs.records.items() if k in keep}

    def _run(self) -> int:
        cfg = self.cfg
        self.m = Manifest.load(self.out) or Manifest()
        self.m.config = cfg.model_dump(mode="json")
        self.m.identity_sha256 = cfg.identity_sha256()
        self.m.round = cfg.round
        self.m.mode = "bootstrap" if cfg.bootstrap else "mcts"
        self.m.inputs = self.inputs.records
        self.m.status = "running"
        remove_temp_dirs(self.out)
        if cfg.force_phase:
            first = min(PHASES.index(p) for p in cfg.force_phase)
            for p in PHASES[first:]:
                self._invalidate(p, f"--force-phase {PHASES[first]}")
        run = {
            "started": now(),
            "argv": sys.argv[1:],
            "phases": list(cfg.phases),
            "force_phase": list(cfg.force_phase),
        }
        if self.inputs.changed:  # of phases not run yet (inputs.settings_may_change)
            run["changed"] = self.inputs.changed
        self.m.runs.append(run)
        self.m.save(self.out)
        code = 0
        for phase, skip in phase_order(cfg, self.m, self.out):
            if skip:
                log.info("%s: %s, not run again (--force-phase %s re-runs it)", phase, skip, phase)
                continue
            if gone := missing_outputs(self.m, self.out, phase):
                code = (
                    self._restore(phase) if self._restorable(phase) else self._rebuild(phase, gone)
                )
            else:
                code = self._phase(phase)
            if code:
                break
        self._finish(run, code)
        return code

    def _phase(self, phase: Phase) -> int:
        rec = self.m.phases[phase] = PhaseRecord(status="running", started=now())
        self.m.save(self.out)
        log.info("── %s ──", phase)
        t0 = time.monotonic()
        try:
            outcome = PHASE_TABLE[phase](self)
        except KeyboardInterrupt:
            rec.status, rec.reason = "interrupted", "interrupted (SIGINT/SIGTERM)"
            code = 130
        except (GenerateError, TrainError) as e:  # expected failures: the message says it all
            rec.status, rec.reason = "failed", str(e)
            code = 1
        except Exception as e:
            rec.status, rec.reason = "failed", f"{type(e).__name__}: {e}"
            log.error("%s failed: %s\n%s", phase, rec.reason, traceback.format_exc())
            code = 1
        else:
            rec.status, rec.reason = outcome.status, outcome.reason
            rec.outputs, rec.counts = outcome.outputs, outcome.counts
            code = 0
            # later phases made from this one's old outputs (or half-made from them) are stale
            for later in PHASES[PHASES.index(phase) + 1 :]:
                self._invalidate(later, f"{phase} was re-made")
        rec.finished = now()
        rec.seconds = round(time.monotonic() - t0, 2)
        self.m.save(self.out)
        level = logging.INFO if code == 0 else logging.ERROR
        log.log(
            level,
            "%s: %s in %.1fs%s",
            phase,
            rec.status,
            rec.seconds,
            f" ({rec.reason})" if rec.reason else "",
        )
        return code

    def _init_model(self, phase: Phase) -> str:
        """What a weight phase trains from: the policy from the base, the PPM from the new
        policy when there is one."""
        if phase == "ppm" and self.m.phases["sft"].status == "complete":
            return str(self.out / "policy")
        return self._base()

    def _restorable(self, phase: Phase) -> bool:
        from training.restore import can_restore

        rec = self.m.phases[phase]
        return bool(rec.outputs) and all(can_restore(self.out / o, rec.counts) for o in rec.outputs)

    def _restore(self, phase: Phase) -> int:
        """Merge a finished phase's committed adapter (or head) onto its init model: the same
        weights as the recorded run's, up to the adapter's fp16 rounding, in about a minute."""
        from training.restore import restore

        rec = self.m.phases[phase]
        init = self._init_model(phase)
        log.info(
            "%s: complete, weights missing: merging its committed adapter or head onto %s",
            phase,
            init,
        )
        t0 = time.monotonic()
        try:
            for o in rec.outputs:
                restore("sft" if phase == "sft" else "ppm", init, self.out / o)
        except KeyboardInterrupt:
            return 130
        except Exception as e:
            log.error("%s: merging the adapter failed: %s: %s", phase, type(e).__name__, e)
            return 1
        rec.restores.append({"at": now(), "seconds": round(time.monotonic() - t0, 2)})
        self.m.save(self.out)
        return 0

    def _rebuild(self, phase: Phase, gone: list[str]) -> int:
        """Train a finished phase's weights again (same data, settings and seeds); the record
        and the later phases stand, since they describe the same model."""
        old = self.m.phases[phase].model_copy(deep=True)
        log.info(
            "%s: complete, but %s missing: training it again from the recorded data and settings",
            phase,
            ", ".join(gone),
        )
        t0 = time.monotonic()
        self.rebuilding = True
        try:
            outcome = PHASE_TABLE[phase](self)
        except KeyboardInterrupt:
            return 130
        except Exception as e:
            log.error("%s: the rebuild failed: %s: %s", phase, type(e).__name__, e)
            return 1
        finally:
            self.rebuilding = False
        same = {
            k: outcome.counts.get(k) == v
            for k, v in old.counts.items()
            if k in ("examples", "skipped_too_long", "optimizer_steps", "tokens")
        }
        sha = outcome.counts.get("adapter_sha256")
        same_adapter = None  # bit-identical is likely on the same hardware, not promised
        if "adapter_sha256" in old.counts:
            same_adapter = sha == old.counts["adapter_sha256"]
        elif sha:  # recorded before adapters were kept: the rebuilt one stands for it
            old.counts["adapter_sha256"] = sha
        seconds = round(time.monotonic() - t0, 2)
        old.rebuilds.append(
            {
                "at": now(),
                "seconds": seconds,
                "same_counts": all(same.values()),
                "same_adapter": same_adapter,
                "counts": outcome.counts,
            }
        )
        self.m.phases[phase] = old
        self.m.save(self.out)
        if not all(same.values()):
            log.warning(
                "%s: rebuilt, but %s differ from the recorded run",
                phase,
                ", ".join(k for k, ok in same.items() if not ok),
            )
        return 0

    def _invalidate(self, phase: Phase, reason: str) -> None:
        """Back to pending, with the resumable work of an unfinished run of it dropped (its
        finished outputs stay until a new run replaces them)."""
        from training.evaluate import reset_partial
        from training.generate import PARTIAL

        if self.m.phases[phase].status != "pending":
            self.m.phases[phase] = PhaseRecord(reason=reason)
        if phase == "generate":
            (self.out / PARTIAL).unlink(missing_ok=True)
        elif phase == "eval":
            reset_partial(self.out)

    def _finish(self, run: dict[str, Any], code: int) -> None:
        m = self.m
        m.outputs = {
            "policy": "policy" if m.phases["sft"].status == "complete" else None,
            "ppm": "ppm" if m.phases["ppm"].status == "complete" else None,
            "eval": "eval" if m.phases["eval"].status == "complete" else None,
        }
        policy, ppm, new_policy = self._next_models()
        env = {"RSTAR_POLICY_MODEL": policy}
        if ppm:
            env["RSTAR_PPM_MODEL"] = ppm
        if new_policy:
            env["RSTAR_PROMPT_STYLE"] = "bare"  # what the trained policy was fine-tuned on
        m.next_round = {
            "policy": policy,
            "ppm": ppm,
            "args": f"--policy {policy}" + (f" --ppm {ppm}" if ppm else ""),
            "env": env,
        }
        if code == 130:
            m.status = "interrupted"
        elif code:
            m.status = "failed"
        else:
            m.status = "complete" if all(m.done(p) for p in PHASES) else "incomplete"
        run.update(finished=now(), status=m.status)
        m.save(self.out)
        left = [p for p in PHASES if not m.done(p)]
        log.info(
            "round %s: %s%s; manifest: %s",
            self.out,
            m.status,
            f" (not done: {', '.join(left)})" if left else "",
            self.out / "manifest.json",
        )

    def _next_models(self) -> tuple[str, str | None, bool]:
        """(policy, ppm, policy is new) the next round takes."""
        new_policy = self.m.phases["sft"].status == "complete"
        policy = str((self.out / "policy").resolve()) if new_policy else self.cfg.policy
        if self.m.phases["ppm"].status == "complete":
            ppm: str | None = str((self.out / "ppm").resolve())
        else:
            ppm = self.cfg.ppm
        return policy, ppm, new_policy

    # --- phases ----------------------------------------------------------------------------------

    def _generate(self) -> Outcome:
        from training import generate as gen

        if self.cfg.bootstrap:
            counts = asyncio.run(self._bootstrap())
            self.m.data["bootstrap"] = counts
            return Outcome(outputs=[str(gen.TRAJECTORIES), str(gen.REJECTED)], counts=counts)
        if self.cfg.merge_shards:
            counts = self._merge(self.cfg.merge_shards)
        else:
            counts = asyncio.run(self._generate_async()).summary()
        self.m.data["generate"] = counts
        reason = None
        if counts["finished"] < counts["problems"]:
            reason = f"{counts['problems'] - counts['finished']} problems failed (allowed)"
        return Outcome(reason=reason, outputs=[str(gen.TREES)], counts=counts)

    def _merge(self, count: int) -> dict[str, Any]:
        from training.shards import merge_shards

        log.info("generate: joining %d shards", count)
        counts = merge_shards(
            self.out,
            count,
            self.inputs.problems,
            self.cfg.generation_sha256(),
            self._generation_inputs(),
            self.cfg.search.max_failure_rate,
        )
        return {**counts.summary(), "shards": count}

    async def _bootstrap(self) -> dict[str, Any]:
        from training.engines import open_sandbox
        from training.generate import bootstrap_phase

        conc = 2 * max(1, self.cfg.search.concurrency)
        if self.components is not None:
            return await bootstrap_phase(self.inputs.rows, self.components.sandbox, self.out, conc)
        async with open_sandbox() as sandbox:
            return await bootstrap_phase(self.inputs.rows, sandbox, self.out, conc)

    async def _generate_async(
        self, problems: list[Any] | None = None, trees: Path | None = None
    ) -> Any:
        from search import Budget
        from training.engines import (
            input_models,
            model_settings,
            open_components,
            open_sandbox,
            search_config,
        )
        from training.generate import TREES, GenerateProgress, generate

        cfg, s = self.cfg, self.cfg.search
        settings = model_settings(cfg, input_models(cfg))
        config = search_config(cfg, settings)
        budget = Budget(rollouts=s.rollouts, max_tokens=s.max_tokens, time_limit_s=s.time_limit_s)
        problems = self.inputs.problems if problems is None else problems
        more = f" (up to {s.unsolved_rollouts} while unsolved)" if s.unsolved_rollouts else ""
        log.info(
            "generate: MCTS over %d problems (%s, PPM: %s; %d rollouts%s, %d candidates, "
            "depth %d, %d problems at once, prompt %s)",
            len(problems),
            cfg.policy,
            cfg.ppm or "none, terminal-guided",
            s.rollouts,
            more,
            s.candidates,
            s.max_depth,
            s.concurrency,
            config.prompt_style,
        )

        async def go(comps: Any) -> Any:
            with GenerateProgress(len(problems)) as progress:
                return await generate(
                    problems,
                    comps,
                    config,
                    budget,
                    trees or self.out / TREES,
                    concurrency=s.concurrency,
                    max_failure_rate=s.max_failure_rate,
                    progress=progress,
                )

        if self.components is not None:
            return await go(self.components)
        async with open_sandbox() as sandbox, open_components(settings, sandbox) as comps:
            return await go(comps)

    def _extract(self) -> Outcome:
        from training.extract import DATA, run_extract

        counts = run_extract(
            self.out, bootstrap=bool(self.cfg.bootstrap), rules=self.cfg.label_rules()
        )
        self.m.data["extract"] = counts
        outs = [
            str(DATA / n)
            for n in ("trajectories.jsonl", "sft.jsonl", "ppm_pairs.jsonl", "stats.json")
        ]
        return Outcome(outputs=outs, counts=counts)

    def _count(self, rel: Path) -> int:
        path = self.out / rel
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())

    def _base(self) -> str:
        from models.default_model import resolve_model

        return resolve_model(self.cfg.base_model or self.cfg.policy)

    def _log_name(self, kind: str) -> str:
        return f"{kind}.rebuild" if self.rebuilding else kind

    def _sft(self) -> Outcome:
        from training.extract import SFT
        from training.launch import POLICY, result_counts, train
        from training.restore import adapter_sha256

        n = self._count(SFT)
        if n == 0:
            solved = self.m.data.get("extract", {}).get("problems_solved", 0)
            return Outcome(
                "skipped",
                f"no SFT data: 0 correct trajectories ({solved} problems "
                "solved); the policy is not retrained",
            )
        base = self._base()
        log.info("sft: %d examples, from %s", n, base)
        result = train(
            "sft",
            self.out,
            self.out / SFT,
            base,
            self.cfg.sft,
            self.cfg.launcher,
            self._log_name("sft"),
        )
        counts = {**result_counts(result), "adapter_sha256": adapter_sha256(self.out / POLICY)}
        return Outcome(outputs=[str(POLICY)], counts=counts)

    def _ppm(self) -> Outcome:
        from training.extract import PAIRS
        from training.launch import PPM, result_counts, train
        from training.restore import adapter_sha256

        n = self._count(PAIRS)
        if n == 0:
            return Outcome(
                "skipped",
                "no preference pairs: no tree held both a correct and a "
                "wrong answer under one step; no PPM trained",
            )
        init = self._init_model("ppm")
        if self.cfg.ppm_method == "head":
            return self._ppm_head(init)
        log.info("ppm: %d pairs, a fresh head on %s", n, init)
        result = train(
            "ppm",
            self.out,
            self.out / PAIRS,
            init,
            self.cfg.ppm_train,
            self.cfg.launcher,
            self._log_name("ppm"),
        )
        counts = {
            **result_counts(result),
            "init": init,
            "adapter_sha256": adapter_sha256(self.out / PPM),
        }
        return Outcome(outputs=[str(PPM)], counts=counts)

    def _ppm_head(self, init: str) -> Outcome:
        """The PPM as a linear head on the new policy's frozen features, fitted on this round's
        trees under its label rules (training/ppm_head.py)."""
        from training.generate import TREES
        from training.launch import PPM
        from training.ppm_head import save_ppm, train_head
        from training.restore import head_sha256

        log.info("ppm: a linear head on %s's frozen features", init)
        head, report = train_head(
            init, self.out / TREES, self.cfg.label_rules(), self.cfg.ppm_dev_trees
        )
        save_ppm(init, head, self.out / PPM, report)
        counts: dict[str, Any] = {
            "method": "head",
            "init": init,
            "pairs": report.train_pairs,
            "problems": report.train_problems,
            "decay": report.decay,
            "heldout_accuracy": report.heldout.overall.accuracy if report.heldout else None,
            "head_sha256": head_sha256(self.out / PPM),
        }
        if report.dev is not None:
            kinds = [("all", report.dev.overall), *report.dev.by_kind.items()]
            counts["dev"] = {
                k: {
                    "accuracy": r.accuracy,
                    "ci95_by_problem": r.ci95_by_problem,
                    "pairs": r.pairs,
                    "problems": r.problems,
                }
                for k, r in kinds
            }
        return Outcome(outputs=[str(PPM)], counts=counts)

    def _eval(self) -> Outcome:
        from training.engines import ModelChoice, input_models
        from training.evaluate import EVAL, Side, run_eval

        cfg = self.cfg
        if not self.inputs.eval_problems:
            return Outcome("skipped", "no held-out set: pass --eval-data FILE")
        prev = input_models(cfg)
        new_policy = self.m.phases["sft"].status == "complete"
        new_ppm = self.m.phases["ppm"].status == "complete"
        sides = [Side("previous", prev)] if cfg.eval.previous else []
        notes = []
        if new_policy or new_ppm:
            engine = cfg.eval.engine or (cfg.engine if cfg.engine != "remote" else "vllm")
            ppm_engine = cfg.ppm_engine if cfg.ppm_engine != "remote" else "transformers"
            sides.append(
                Side(
                    "new",
                    ModelChoice(
                        policy=str(self.out / "policy") if new_policy else prev.policy,
                        ppm=str(self.out / "ppm") if new_ppm else prev.ppm,
                        engine=engine if new_policy else prev.engine,
                        ppm_engine=ppm_engine if new_ppm else prev.ppm_engine,
                        policy_url=None if new_policy else prev.policy_url,
                        ppm_url=None if new_ppm else prev.ppm_url,
                        prompt_style=None if new_policy else prev.prompt_style,
                    ),
                )
            )
        else:
            notes.append("nothing was trained: only the inputs are evaluated")
        if not sides:
            return Outcome("skipped", "nothing to evaluate (nothing trained, --no-eval-previous)")
        info = {"round": cfg.round, "data": self.m.inputs["eval_data"].model_dump()}
        metrics = asyncio.run(
            run_eval(
                cfg,
                self.inputs.eval_problems,
                sides,
                self.out,
                components=self.components,
                info=info,
            )
        )
        self.m.metrics = metrics
        return Outcome(
            reason="; ".join(notes) or None,
            outputs=[str(EVAL / "report.json"), str(EVAL / "accuracy.png")],
            counts={"problems": len(self.inputs.eval_problems), "sides": [s.name for s in sides]},
        )


# The round, top to bottom: each phase and what it makes. A phase runs once its inputs are
# finished (config.REQUIRES) and is skipped when its outputs are (inputs.phase_order).
PHASE_TABLE: dict[Phase, Callable[[Round], Outcome]] = {
    "generate": Round._generate,  # MCTS over problems with gold answers (or the bootstrap) → trees
    "extract": Round._extract,  # trees → SFT trajectories and PPM preference pairs
    "sft": Round._sft,  # SFT data → the new policy
    "ppm": Round._ppm,  # preference pairs → the new PPM, on the new policy's backbone
    "eval": Round._eval,  # the new models against the previous ones on held-out problems
}
assert tuple(PHASE_TABLE) == PHASES


# --- the command line ----------------------------------------------------------------------------

USAGE = """\
examples:
  # round 0: GSM8K reference solutions → the first policy
  python -m server.train_round --bootstrap gsm8k --out runs/round0 --eval-data test.jsonl
  # round 1: MCTS with the round-0 policy, terminal-guided (no PPM yet)
  python -m server.train_round --problems train.jsonl --policy runs/round0/policy \\
      --out runs/round1 --eval-data test.jsonl
  # round 2+: PPM-augmented MCTS
  python -m server.train_round --config round.json --policy runs/round1/policy \\
      --ppm runs/round1/ppm --out runs/round2
Exit status: 0 done, 1 a phase failed, 2 bad input (nothing run), 130 interrupted.
"""


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m server.train_round",
        description="One round of rStar-Math self-evolution: generate (MCTS with gold answers), "
        "extract (SFT trajectories, PPM pairs), sft, ppm, eval; recorded in OUT/manifest.json.",
        epilog=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    ap.add_argument("--config", help="JSON or TOML file with any of the fields below (flags win)")
    ap.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved configuration as JSON and exit",
    )
    add_config_flags(ap)
    return ap


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None, *, components: Any = None) -> int:
    # engines and trainers (child processes too) keep to warnings; our log says what happens
    for var, val in (
        ("VLLM_LOGGING_LEVEL", "WARNING"),
        ("TRANSFORMERS_VERBOSITY", "error"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        ("TOKENIZERS_PARALLELISM", "false"),
    ):
        os.environ.setdefault(var, val)
    args = parser().parse_args(argv)
    print_config = args.__dict__.pop("print_config", False)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("rstar.round").setLevel(logging.INFO)
    try:
        cfg = build_config(args)
        if print_config:
            print(json.dumps(cfg.model_dump(mode="json"), indent=2))
            return 0
        inputs, _ = preflight(cfg)
    except (ConfigError, InputError) as e:
        print(f"train_round: {e}", file=sys.stderr)
        return 2
    old = None
    with contextlib.suppress(ValueError):  # not in the main thread: keep the default
        old = signal.signal(signal.SIGTERM, _sigterm)  # recorded as "interrupted", like ^C
    try:
        return Round(cfg, inputs, components=components).run()
    except RoundBusy as e:
        print(f"train_round: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
