"""Phase 5, eval: the new checkpoints against the round's inputs on a held-out set.

Each side ("previous": the round's input policy and PPM; "new": this round's checkpoints) is
evaluated by `evaluation.evaluate` (the core `rstar eval` runs on too) with in-process
components (one engine and one sandbox pool per side), greedy and MCTS at a fixed budget by
default, into `eval.partial/<side>/` (results.jsonl as problems finish, so a killed run
resumes; report.json; accuracy_vs_tokens.png). Then `eval.partial/report.json` compares the
two sides and `accuracy.png` draws them, and the directory is renamed to `eval/`.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.config import RoundConfig
from training.engines import (
    ModelChoice,
    model_settings,
    open_components,
    open_sandbox,
    search_config,
)
from training.manifest import replace_dir, write_json

log = logging.getLogger("rstar.round")

EVAL = Path("eval")
EVAL_PARTIAL = Path("eval.partial")


@dataclass(frozen=True)
class Side:
    name: str  # "previous" | "new"
    models: ModelChoice


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    return {
        f"{r['algorithm']}@{r['budget']}": {
            "accuracy": r["accuracy"],
            "correct": r["correct"],
            "n": r["n"],
            "mean_tokens": r["mean_tokens"],
            "errors": r["errors"],
        }
        for r in report["runs"]
    }


async def run_eval(
    cfg: RoundConfig,
    problems: list[Any],
    sides: list[Side],
    round_dir: Path,
    *,
    components: Any = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate every side, compare, write eval/. Returns the metrics for the manifest.
    `components` (tests): use these instead of loading each side's models."""
    import evaluation as ev

    work = round_dir / EVAL_PARTIAL
    work.mkdir(parents=True, exist_ok=True)
    keys = ev.plan(cfg.eval.algorithms, [cfg.eval.rollouts])
    reports: dict[str, dict[str, Any]] = {}
    for side in sides:
        report = await _eval_side(cfg, problems, side, keys, work / side.name, components, info)
        if report.get("status") != "complete":
            raise RuntimeError(f"eval of {side.name} ended {report.get('status')}")
        reports[side.name] = report

    metrics: dict[str, Any] = {name: _summary(r) for name, r in reports.items()}
    if "previous" in metrics and "new" in metrics:
        metrics["delta_accuracy"] = {
            k: round(v["accuracy"] - metrics["previous"][k]["accuracy"], 6)
            for k, v in metrics["new"].items()
            if k in metrics["previous"]
            and v["accuracy"] is not None
            and metrics["previous"][k]["accuracy"] is not None
        }
    combined = {
        **(info or {}),
        "problems": len(problems),
        "metrics": metrics,
        "sides": {
            name: {"models": r.get("models"), "report": f"{name}/report.json"}
            for name, r in reports.items()
        },
    }
    write_json(work / "report.json", combined)
    try:
        plot_sides(metrics, work / "accuracy.png", len(problems))
    except Exception as e:  # a plot must never lose the report
        log.warning("eval: no plot (%s)", e)
    replace_dir(work, round_dir / EVAL)
    return metrics


async def _eval_side(
    cfg: RoundConfig,
    problems: list[Any],
    side: Side,
    keys: list[Any],
    out: Path,
    components: Any,
    info: dict[str, Any] | None,
) -> dict[str, Any]:
    """One side's evaluation on its own engine (or on `components`), resumable in `out`."""
    import evaluation as ev
    from models.factory import model_versions

    settings = model_settings(cfg, side.models)
    config = search_config(cfg, settings, for_eval=True)
    models = {
        "policy": side.models.policy,
        "policy_engine": side.models.engine,
        "reward_model": side.models.ppm,
        "prompt_style": config.prompt_style,
        "versions": model_versions(settings) if components is None else {},
    }
    side_info = {
        **(info or {}),
        "side": side.name,
        "config": {
            "search": config.model_dump(mode="json"),
            "algorithms": cfg.eval.algorithms,
            "rollouts": cfg.eval.rollouts,
            "max_tokens": cfg.eval.max_tokens,
            "time_limit_s": cfg.eval.time_limit_s,
        },
    }
    progress = ev.EvalProgress(keys, len(problems))
    progress.status(
        f"eval {side.name}: {side.models.policy} (PPM: {side.models.ppm}) on "
        f"{len(problems)} problems"
    )

    async def run(comps: Any) -> dict[str, Any]:
        solver = ev.InProcessSolver(
            comps,
            config,
            max_tokens=cfg.eval.max_tokens,
            time_limit_s=cfg.eval.time_limit_s,
            models=models,
        )
        with progress:
            return await ev.evaluate(
                problems,
                keys,
                solver,
                out,
                concurrency=cfg.eval.concurrency,
                resume=True,
                progress=progress,
                info=side_info,
            )

    if components is not None:
        return await run(components)
    async with open_sandbox() as sandbox, open_components(settings, sandbox) as comps:
        return await run(comps)


def reset_partial(round_dir: Path) -> None:
    shutil.rmtree(round_dir / EVAL_PARTIAL, ignore_errors=True)


def plot_sides(metrics: dict[str, Any], path: Path, n: int) -> Path:
    """Accuracy per (algorithm, budget), a bar per side."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    sides = [s for s in ("previous", "new") if s in metrics]
    labels = sorted({k for s in sides for k in metrics[s]})
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, len(sides))
    for i, side in enumerate(sides):
        xs = [j + (i - (len(sides) - 1) / 2) * width for j in range(len(labels))]
        ys = [(metrics[side].get(k) or {}).get("accuracy") or 0.0 for k in labels]
        bars = ax.bar(xs, ys, width, label=side, color=f"C{i}")
        ax.bar_label(bars, labels=[f"{100 * y:.0f}%" for y in ys], fontsize=8)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("accuracy")
    ax.set_title(f"previous round vs this round ({n} held-out problems)", fontsize=10)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return path
