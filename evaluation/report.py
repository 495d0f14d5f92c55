"""Presenting an evaluation's report: the accuracy-against-tokens plot (matplotlib, no pyplot),
the figures as a rich table, and live progress on a terminal or as log lines. Kept apart from
the run so that the core never needs a display library until it draws.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.run import ALGORITHMS, LABELS, RunKey, Tally


def _point(run: dict[str, Any]) -> str:
    return f"{run['max_tokens']}t" if run.get("max_tokens") else str(run["budget"])


def plot(report: dict[str, Any], path: str | Path) -> Path:
    """Accuracy against mean generated tokens per problem (log x), a line per algorithm with
    its points labelled by budget."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display
    from matplotlib.ticker import FuncFormatter, LogLocator, PercentFormatter

    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    top = 0.0
    for i, alg in enumerate(ALGORITHMS):
        pts = sorted((max(r["mean_tokens"], 1.0), r["accuracy"], _point(r))
                     for r in report["runs"] if r["algorithm"] == alg and r["n"])  # fmt: skip
        if not pts:
            continue
        xs, ys = [x for x, _, _ in pts], [y for _, y, _ in pts]
        top = max(top, *ys)
        ax.plot(xs, ys, marker="o", color=f"C{i}", label=LABELS[alg])  # a colour per algorithm
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
    ax.set_title(f"{name} on {data.get('name', 'problems')} "
                 f"({report['problems']} problems)", fontsize=10)  # fmt: skip
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
        t.add_row(LABELS[r["algorithm"]], budget, str(r["n"]), str(r["correct"]),
                  acc, tok, sec, str(r["errors"]))  # fmt: skip
    return t


def progress_bar(
    console: Any, label: str, *fields: str, remaining: bool = False, transient: bool = False
) -> Any:
    """The project's rich bar: label, bar, done/total, a text column per task field, elapsed
    (and remaining) time."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn()]
    columns += [TextColumn(f"{{task.fields[{f}]}}") for f in fields]
    columns += [TimeElapsedColumn(), *([TimeRemainingColumn()] if remaining else [])]
    return Progress(*columns, console=console, transient=transient)


class RichBar:
    """Starts and stops a rich progress bar (`bar`) on a terminal (`tty`); `status` prints a
    line either way. Shared by `rstar eval`'s and `rstar solve`'s progress displays."""

    tty: bool
    bar: Any
    console: Any

    def __enter__(self) -> Any:
        if self.tty:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.tty:
            self.bar.stop()

    def status(self, text: str) -> None:
        self.console.print(f"[dim]{text}[/dim]")


@dataclass
class EvalProgress(RichBar):
    """A bar per (algorithm, budget) on a terminal; otherwise a line every `every_s` seconds
    (and when one finishes) with the accuracy so far of each. Always on stderr."""

    keys: Sequence[RunKey]
    total: int
    every_s: float = 10.0
    console: Any = None
    _last: float = field(default=0.0, init=False)
    _tasks: dict[RunKey, Any] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = self.console or Console(stderr=True)
        self.tty = self.console.is_terminal
        self.bar = Progress(
            TextColumn("{task.description:>22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[acc]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        for k in self.keys:
            self._tasks[k] = self.bar.add_task(k.label, total=self.total, acc="")

    def __enter__(self) -> EvalProgress:
        self._last = time.monotonic()
        return super().__enter__()

    @staticmethod
    def _acc(t: Tally) -> str:
        return f"{100 * t.accuracy:.0f}%" if t.accuracy is not None else "-"

    def __call__(self, key: RunKey, tallies: dict[RunKey, Tally]) -> None:
        if self.tty:
            for k, t in tallies.items():
                self.bar.update(self._tasks[k], completed=t.done,
                                acc=f"acc {self._acc(t)} ({t.correct}/{t.done})")  # fmt: skip
            return
        now = time.monotonic()
        finished = tallies[key].done == tallies[key].total
        if finished or now - self._last >= self.every_s:
            self._last = now
            done = sum(t.done for t in tallies.values())
            total = sum(t.total for t in tallies.values())
            parts = [f"{k.label} {t.done}/{t.total} {self._acc(t)}" for k, t in tallies.items()]
            line = f"[{done}/{total}] " + " | ".join(parts)
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)


class CountProgress(RichBar):
    """One bar over `total` items on a terminal; otherwise a line every `every_s` seconds and at
    the end (logs, CI). Always on stderr. Call it with how many items just finished."""

    def __init__(self, label: str, total: int, every_s: float = 10.0) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.tty = self.console.is_terminal
        self.label, self.total, self.every_s = label, total, every_s
        self.done, self._start, self._last = 0, time.monotonic(), time.monotonic()
        self.bar = progress_bar(self.console, label, remaining=True, transient=True)
        self.task = self.bar.add_task(label, total=total)

    def __call__(self, n: int = 1) -> None:
        self.done += n
        if self.tty:
            self.bar.advance(self.task, n)
            return
        now = time.monotonic()
        if self.done >= self.total or now - self._last >= self.every_s:
            self._last = now
            self.console.print(f"{self.label} {self.done}/{self.total}, {now - self._start:.0f} s",
                               markup=False, highlight=False)  # fmt: skip
