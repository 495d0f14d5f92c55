"""Progress on a terminal as rich bars, elsewhere (logs, CI) as a line now and then, always on
stderr: a bar per (algorithm, budget) for `rstar eval` and a round's eval, one over a count
(`rstar eval-ppm`, the PPM head's features), one search's rollouts for `rstar solve`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from evaluation.records import RunKey, Tally


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
                self.bar.update(
                    self._tasks[k],
                    completed=t.done,
                    acc=f"acc {self._acc(t)} ({t.correct}/{t.done})",
                )
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
            self.console.print(
                f"{self.label} {self.done}/{self.total}, {now - self._start:.0f} s",
                markup=False,
                highlight=False,
            )


class SearchBar(RichBar):
    """One search's rollouts (`rstar solve`): a bar on a terminal, a line a second otherwise
    (logs, CI)."""

    def __init__(self, total: int) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.tty = self.console.is_terminal
        self._last = 0.0
        self.bar = progress_bar(self.console, "[bold]thinking", "info", transient=True)
        self.task = self.bar.add_task("search", total=total, info="starting")

    def __call__(self, p: Any) -> None:
        best = f"best {p.best_answer} ({p.best_score:+.2f})" if p.best_answer else "no answer yet"
        info = f"{p.tokens} tokens, {p.nodes} steps, {best}"
        if self.tty:
            self.bar.update(self.task, completed=p.rollouts, info=info)
        elif time.monotonic() - self._last >= 1.0:
            self._last = time.monotonic()
            self.console.print(
                f"rollouts {p.rollouts}/{p.rollouts_budget}, {info}, {p.elapsed_s:.0f}s"
            )
