"""Phase 1, generate: MCTS over every training problem with its gold answer as terminal reward.

Terminal-guided Q when the round has no PPM (the paper's first rounds), PPM-augmented when it
has one. Problems run `concurrency` at a time on one shared engine and sandbox pool; each
finished problem is appended at once (flushed and fsync'ed) to `generate/trees.partial.jsonl`
as one line: id, problem, gold, answer, correct, solved (a correct terminal exists), reward
source, usage, stopped_by and the whole tree (`Tree.to_dict`, read back with `Tree.from_json`).
A killed run restarts where it stopped: ids already there are skipped, a line cut short by the
kill is dropped (evaluation/jsonl.py). When every problem is in, the file is renamed to
`generate/trees.jsonl`.

The bootstrap round (round 0) generates nothing: `bootstrap_phase` converts GSM8K reference
solutions into step trajectories and verifies them in the sandbox (training/gsm8k.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evaluation.jsonl import prepare_append, read_records
from search import Budget, Components, SearchConfig, run_search

log = logging.getLogger("rstar.round")

TREES = Path("generate") / "trees.jsonl"
PARTIAL = Path("generate") / "trees.partial.jsonl"
SHARDS = Path("generate") / "shards"  # I-of-N.jsonl (.partial.jsonl while it runs), I-of-N.json
TRAJECTORIES = Path("generate") / "trajectories.jsonl"  # bootstrap
REJECTED = Path("generate") / "rejected.jsonl"  # bootstrap
TREE_FIELDS = ("id", "tree")  # what a line of a trees file must hold to count


class GenerateError(RuntimeError):
    """The phase cannot finish (every search fails, or too many did)."""


@dataclass
class GenerateCounts:
    problems: int = 0
    finished: int = 0  # problems with a line (this run and earlier ones)
    resumed: int = 0  # already there when this run started
    searched: int = 0  # searched by this run
    failed: int = 0  # searches that raised (not persisted; retried by a re-run)
    correct: int = 0  # the search's own answer was right
    solved: int = 0  # a correct terminal exists (SFT data)
    tokens: int = 0
    extended: int = 0  # went past the budget's rollouts unsolved (SearchConfig.unsolved_rollouts)
    extended_solved: int = 0  # of those, solved by the extra rollouts
    dropped_lines: int = 0  # unreadable lines skipped (a cut last line is removed)
    failures: list[str] = field(default_factory=list)  # first few "id: error"

    def add(self, correct: bool, solved: bool, tokens: int, extended: bool) -> None:
        self.correct += correct
        self.solved += solved
        self.tokens += tokens
        self.extended += extended
        self.extended_solved += extended and solved

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d["solved_rate"] = round(self.solved / self.finished, 4) if self.finished else None
        return d


# --- the persisted lines -------------------------------------------------------------------------


def scan_partial(path: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """(finished records by id, without their trees; unreadable lines) of a partial file, made
    ready for appends (evaluation.jsonl's rule: the line a kill cut short is dropped)."""
    bad = prepare_append(path, TREE_FIELDS)
    done: dict[str, dict[str, Any]] = {}
    for rec in read_records(path, TREE_FIELDS):
        rec.pop("tree")
        done.setdefault(str(rec["id"]), rec)
    return done, bad


def record_line(problem: Any, result: Any) -> str:
    tree = result.tree
    rec = {
        "id": problem.id,
        "problem": problem.problem,
        "gold": problem.answer,
        "answer": result.answer,
        "correct": bool(result.correct),
        "solved": any(n.correct is True for n in tree.terminals()),
        "reward_source": result.reward_source,
        "stopped_by": result.stopped_by,
        "usage": result.usage.model_dump(mode="json"),
        "tree": tree.to_dict(),
    }
    return json.dumps(rec, ensure_ascii=False)


# --- progress ------------------------------------------------------------------------------------


class GenerateProgress:
    """A rich bar with the solved rate so far on a terminal; otherwise a line every `every_s`
    seconds (and at the end). Always on stderr."""

    def __init__(self, total: int, every_s: float = 10.0, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.tty = self.console.is_terminal
        self.total, self.every_s = total, every_s
        self.done = self.solved = 0
        self.t0 = self._last = time.monotonic()
        self.bar: Any = None
        self._task: Any = None

    def __enter__(self) -> GenerateProgress:
        if self.tty:
            from evaluation.progress import progress_bar

            self.bar = progress_bar(self.console, "generate", "rate", remaining=True)
            self._task = self.bar.add_task("generate", total=self.total, rate="")
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
        else:
            self._line()

    def _rate(self) -> str:
        pct = f"{100 * self.solved / self.done:.0f}%" if self.done else "-"
        return f"solved {self.solved}/{self.done} ({pct})"

    def _line(self) -> None:
        el = time.monotonic() - self.t0
        self.console.print(
            f"generate {self.done}/{self.total}  {self._rate()}  {el:.0f}s",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    def resumed(self, done: int, solved: int) -> None:
        self.done, self.solved = done, solved
        if self.bar is not None:
            self.bar.update(self._task, completed=done, rate=self._rate())

    def __call__(self, solved: bool) -> None:
        self.done += 1
        self.solved += solved
        if self.bar is not None:
            self.bar.update(self._task, completed=self.done, rate=self._rate())
        elif time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            self._line()


# --- the phase -----------------------------------------------------------------------------------


async def generate(
    problems: Sequence[Any],
    components: Components,
    config: SearchConfig,
    budget: Budget,
    trees: Path,
    *,
    concurrency: int = 8,
    max_failure_rate: float = 0.0,
    max_first_failures: int = 10,
    progress: GenerateProgress | Callable[[bool], None] | None = None,
) -> GenerateCounts:
    """Search every problem not yet in the partial file beside `trees` (trees.partial.jsonl),
    appending each as it finishes; rename it to `trees` once all are in. Raises GenerateError
    when the first `max_first_failures` searches all fail, or (at the end) when more than
    `max_failure_rate` of the problems failed."""
    partial = partial_of(trees)
    partial.parent.mkdir(parents=True, exist_ok=True)
    done, bad = scan_partial(partial)
    ids = {p.id for p in problems}
    done = {k: v for k, v in done.items() if k in ids}
    counts = GenerateCounts(problems=len(problems), resumed=len(done), dropped_lines=bad)
    for rec in done.values():
        usage = rec.get("usage") or {}
        counts.add(
            bool(rec.get("correct")),
            bool(rec.get("solved")),
            int(usage.get("tokens", 0)),
            int(usage.get("rollouts", 0)) > budget.rollouts,
        )
    counts.finished = len(done)
    if isinstance(progress, GenerateProgress):
        progress.resumed(counts.finished, counts.solved)
    todo = [p for p in problems if p.id not in done]
    if done:
        log.info(
            "generate: %d of %d problems already done, %d to go",
            len(done),
            len(problems),
            len(todo),
        )
    sem = asyncio.Semaphore(max(1, concurrency))

    with open(partial, "a", encoding="utf-8") as sink:  # noqa: ASYNC230 (small appends)

        async def one(p: Any) -> None:
            async with sem:
                try:
                    r = await run_search("mcts", p.problem, components, budget, config, p.answer)
                except Exception as e:
                    counts.failed += 1
                    if len(counts.failures) < 5:
                        counts.failures.append(f"{p.id}: {type(e).__name__}: {e}")
                    log.warning("generate: %s failed: %s: %s", p.id, type(e).__name__, e)
                    if counts.searched == 0 and counts.failed >= max_first_failures:
                        raise GenerateError(
                            f"the first {counts.failed} searches all failed; last: "
                            f"{type(e).__name__}: {e}"
                        ) from e
                    return
            sink.write(record_line(p, r) + "\n")
            sink.flush()
            os.fsync(sink.fileno())
            solved = any(n.correct is True for n in r.tree.terminals())
            counts.searched += 1
            counts.finished += 1
            counts.add(bool(r.correct), solved, r.usage.tokens, r.usage.rollouts > budget.rollouts)
            if progress is not None:
                progress(solved)

        try:
            async with asyncio.TaskGroup() as tg:
                for p in todo:
                    tg.create_task(one(p))
        except* GenerateError as eg:
            raise eg.exceptions[0] from None

    missing = counts.problems - counts.finished
    if missing:
        if counts.failed / max(1, counts.problems) > max_failure_rate:
            raise GenerateError(
                f"{counts.failed} of {counts.problems} searches failed (first: "
                f"{counts.failures[0] if counts.failures else '?'}); the {counts.finished} "
                "finished problems are kept: re-run to retry the rest"
            )
        log.warning("generate: %d problems failed (allowed by max_failure_rate)", missing)
    os.replace(partial, trees)
    return counts


def partial_of(trees: Path) -> Path:
    """Where a trees file grows until it is complete."""
    return trees.with_name(trees.name.removesuffix(".jsonl") + ".partial.jsonl")


# --- round 0 -------------------------------------------------------------------------------------


async def bootstrap_phase(
    rows: Sequence[dict[str, Any]], sandbox: Any, round_dir: Path, concurrency: int = 8
) -> dict[str, Any]:
    """Convert and verify GSM8K reference solutions in the sandbox; write the survivors
    (trajectories) and the rejected rows with their reasons. Returns the counts."""
    from search.grading import default_grader
    from training.common import write_jsonl
    from training.gsm8k import BootstrapStats, bootstrap

    t0 = time.monotonic()

    def progress(s: BootstrapStats) -> None:
        log.info(
            "bootstrap: %d/%d rows, %d converted, %d verified (%.0fs)",
            s.rows,
            len(rows),
            s.converted,
            s.verified,
            time.monotonic() - t0,
        )

    good, bad, stats = await bootstrap(
        rows,
        sandbox,
        default_grader(),
        concurrency=concurrency,
        progress=progress,
        progress_every=max(1, min(500, len(rows) // 10)),
    )
    write_jsonl(round_dir / TRAJECTORIES, good)
    write_jsonl(round_dir / REJECTED, bad)
    return {
        "rows": stats.rows,
        "converted": stats.converted,
        "verified": stats.verified,
        "survival_rate": round(stats.verified / stats.rows, 4) if stats.rows else None,
        "rejected": dict(sorted(stats.rejected.items())),
    }
