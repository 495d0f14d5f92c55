"""Presenting an evaluation's report: the accuracy-against-tokens plot (matplotlib, no pyplot)
and the figures as a rich table. Display libraries are imported only when they draw."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evaluation.records import LABELS, STOP_RULES
from search.formats import STEP_FORMATS


def _point(run: dict[str, Any]) -> str:
    return f"{run['max_tokens']}t" if run.get("max_tokens") else str(run["budget"])


def _rule(run: dict[str, Any]) -> str:
    """The run's stop rule; reports written before there were any spent their budgets."""
    return run.get("stop_when") or "budget"


def _format(run: dict[str, Any]) -> str:
    """The run's step format; reports written before there was a choice are code."""
    return run.get("step_format") or "code"


def _name(run_or_alg: dict[str, Any] | str, step_format: str = "code") -> str:
    """An algorithm's label, with its step format when that is not rStar-Math's code."""
    if isinstance(run_or_alg, dict):
        run_or_alg, step_format = run_or_alg["algorithm"], _format(run_or_alg)
    return LABELS[run_or_alg] + ("" if step_format == "code" else f" ({step_format} steps)")


def plot(report: dict[str, Any], path: str | Path) -> Path:
    """Accuracy against mean generated tokens per problem (log x), a line per algorithm with
    its points labelled by budget; runs that stop once the answer is settled are a dashed line
    of their own beside the same algorithm's, in its colour, and so are runs on text steps
    (triangles)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display
    from matplotlib.ticker import FuncFormatter, LogLocator, PercentFormatter

    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    top = 0.0
    series = [(alg, rule, fmt) for alg in LABELS for rule in STOP_RULES for fmt in STEP_FORMATS]
    for alg, rule, fmt in series:
        pts = sorted(
            (max(r["mean_tokens"], 1.0), r["accuracy"], _point(r))
            for r in report["runs"]
            if r["algorithm"] == alg and _rule(r) == rule and _format(r) == fmt and r["n"]
        )
        if not pts:
            continue
        xs, ys = [x for x, _, _ in pts], [y for _, y, _ in pts]
        top = max(top, *ys)
        spent = rule == "budget"
        marker = {"code": "os", "text": "^v"}[fmt][0 if spent else 1]
        ax.plot(
            xs,
            ys,
            marker=marker,
            linestyle="-" if spent else "--",
            color=f"C{list(LABELS).index(alg)}",  # a colour per algorithm
            label=_name(alg, fmt) if spent else f"{_name(alg, fmt)}, stop when {rule}",
        )
        if alg != "greedy":
            for x, y, b in pts:
                ax.annotate(b, (x, y), textcoords="offset points", xytext=(4, 5), fontsize=8)
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:,.0f}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
    ax.xaxis.set_minor_formatter(plain)
    ax.set_ylim(0, min(1.0, top * 1.25 + 0.05))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("mean generated tokens per problem (log scale)")
    ax.set_ylabel("accuracy")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="points: budget (rollouts, or tokens)", fontsize=8, title_fontsize=8)
    models = report.get("models") or {}
    data = report.get("data") or {}
    name = (models.get("versions") or {}).get("policy") or models.get("policy", "policy")
    ax.set_title(
        f"{name} on {data.get('name', 'problems')} ({report['problems']} problems)", fontsize=10
    )
    fig.savefig(path, dpi=120)
    return Path(path)


def table(report: dict[str, Any]) -> Any:
    """The report's figures as a rich Table."""
    from rich.table import Table

    t = Table(title=f"{report.get('data', {}).get('name', 'eval')}: {report['problems']} problems")
    for col in ("algorithm", "budget", "n", "correct", "accuracy", "mean tokens", "mean s"):
        t.add_column(col, justify="left" if col == "algorithm" else "right")
    t.add_column("errors", justify="right")
    for r in report["runs"]:
        acc = f"{100 * r['accuracy']:.1f}%" if r["accuracy"] is not None else "-"
        tok = f"{r['mean_tokens']:.0f}" if r["mean_tokens"] is not None else "-"
        sec = f"{r['mean_seconds']:.1f}" if r["mean_seconds"] is not None else "-"
        budget = f"{r['max_tokens']} tok" if r.get("max_tokens") else str(r["budget"])
        if _rule(r) != "budget":
            budget += f" {_rule(r)}"
        t.add_row(
            _name(r),
            budget,
            str(r["n"]),
            str(r["correct"]),
            acc,
            tok,
            sec,
            str(r["errors"]),
        )
    return t
