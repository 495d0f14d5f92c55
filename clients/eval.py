"""`rstar eval`: algorithms × budgets over a JSONL problem set, graded, reported and plotted.

    from clients.eval import InProcessSolver, evaluate, load_problems, plan

    problems = load_problems("gsm8k_test.jsonl", limit=50)      # DataError names file:line
    solver = InProcessSolver(Components(policy, sandbox, reward_model), SearchConfig())
    report = await evaluate(problems, plan(["greedy", "mcts"], [4, 16]), solver, Path("out"))

`RemoteSolver` does the same against a running server (`AsyncRstarClient`, cache off). Every
problem of every (algorithm, budget) is searched once, up to `concurrency` problems at once on
the one engine, and its answer graded against the gold one with the project's grader. In
`out_dir`: `results.jsonl` (a line per finished problem, appended as it finishes, so a killed
run keeps them; `resume=True` skips those), `report.json` (config, data file and sha256, model
versions, accuracy / mean tokens / mean seconds per (algorithm, budget) with per-problem
records) and `accuracy_vs_tokens.png`.

The gold answer is never given to the search (that would turn its terminal rewards into the
training signal); it is only used to grade the returned answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from search.grading import Grader, default_grader

ALGORITHMS = ("greedy", "self_consistency", "best_of_n", "mcts")
LABELS = {"greedy": "greedy", "self_consistency": "self-consistency",
          "best_of_n": "best-of-N", "mcts": "MCTS"}  # fmt: skip
RESULTS, REPORT, PLOT = "results.jsonl", "report.json", "accuracy_vs_tokens.png"


class DataError(ValueError):
    """The problem file cannot be used; the message names file:line and what is wrong."""


class EvalError(RuntimeError):
    """The run cannot go on (a server that refuses the requests, an engine that fails them all,
    an output folder holding another run)."""


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True, slots=True)
class Problem:
    id: str
    problem: str
    answer: str
    line: int


def _gold(value: Any) -> str | None:
    """The gold answer as a string; a GSM8K-style solution keeps what follows its `####`."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        value = value.rsplit("####", 1)[-1].strip()
        return value or None
    return None


def load_problems(
    path: str | Path, *, offset: int = 0, limit: int | None = None, max_errors: int = 10
) -> list[Problem]:
    """Rows `{"problem" (or "question"), "answer", "id" (optional)}`, checked in full before
    anything runs: every broken row is reported as `file:line: what is wrong`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows: list[Problem] = []
    errors: list[str] = []
    first_line: dict[str, int] = {}
    try:
        # "\n" only: JSON strings may hold other Unicode line breaks (U+2028 in GSM8K train)
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"{where}: not valid JSON ({e.msg}, column {e.colno})")
            continue
        if not isinstance(row, dict):
            errors.append(f"{where}: expected a JSON object, got {type(row).__name__}")
            continue
        text = row["problem"] if "problem" in row else row.get("question")
        gold = _gold(row.get("answer"))
        missing = []
        if not isinstance(text, str) or not text.strip():
            missing.append("a non-empty 'problem' (or 'question') string")
        if "answer" not in row:
            missing.append("an 'answer' field")
        elif gold is None:
            missing.append(
                f"a usable 'answer' (a non-empty string or a number; got {row['answer']!r})"
            )
        if missing:
            errors.append(f"{where}: missing {' and '.join(missing)}")
            continue
        pid = str(row.get("id", f"{path.stem}-{len(rows)}"))
        if pid in first_line:
            errors.append(f"{where}: duplicate id {pid!r} (first on line {first_line[pid]})")
            continue
        first_line[pid] = lineno
        rows.append(Problem(pid, text, gold, lineno))  # type: ignore[arg-type]
    if errors:
        more = f"\n… and {len(errors) - max_errors} more" if len(errors) > max_errors else ""
        raise DataError(
            f"{path}: {len(errors)} unusable row(s):\n" + "\n".join(errors[:max_errors]) + more
        )
    if not rows:
        raise DataError(f"{path}: no problems in the file")
    if offset < 0 or (limit is not None and limit < 1):
        raise DataError("--offset must be >= 0 and --limit >= 1")
    selected = rows[offset : None if limit is None else offset + limit]
    if not selected:
        raise DataError(f"{path}: only {len(rows)} problems, none left after offset {offset}")
    return selected


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True, order=True)
class RunKey:
    """One (algorithm, budget) of the evaluation; budget = rollouts (samples)."""

    algorithm: str
    budget: int

    @property
    def label(self) -> str:
        return f"{self.algorithm}@{self.budget}"


def plan(algorithms: Iterable[str], budgets: Iterable[int]) -> list[RunKey]:
    """Every algorithm at every budget; greedy runs once (one chain, budget 1)."""
    budgets = list(budgets)
    if not budgets or any(b < 1 for b in budgets):
        raise ValueError("budgets must be positive rollout counts")
    keys: list[RunKey] = []
    for alg in algorithms:
        if alg not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {alg!r}; choose from {', '.join(ALGORITHMS)}")
        for b in [1] if alg == "greedy" else sorted(set(budgets)):
            if RunKey(alg, b) not in keys:
                keys.append(RunKey(alg, b))
    if not keys:
        raise ValueError("no algorithm to evaluate")
    return keys


# --------------------------------------------------------------------------- solvers


@dataclass(slots=True)
class Outcome:
    """What one search of one problem gave."""

    answer: str | None
    tokens: int
    seconds: float
    stopped_by: str | None = None
    rollouts: int = 0
    tree: dict[str, Any] | None = None  # search.tree_stats of its tree, when the solver has it


class Solver(Protocol):
    models: dict[str, Any]  # {"policy", "policy_engine", "reward_model", "versions"}

    async def solve(self, problem: str, algorithm: str, rollouts: int) -> Outcome: ...


class InProcessSolver:
    """Searches on injected components (one shared engine, sandbox and reward model)."""

    def __init__(
        self,
        components: Any,
        config: Any = None,
        *,
        max_tokens: int | None = None,
        time_limit_s: float | None = None,
        models: dict[str, Any] | None = None,
    ) -> None:
        from search import SearchConfig

        self.components = components
        self.config = config or SearchConfig()
        self.max_tokens = max_tokens
        self.time_limit_s = time_limit_s
        self.models = models or {}

    async def solve(self, problem: str, algorithm: str, rollouts: int) -> Outcome:
        from search import Budget, run_search
        from search.tree_stats import tree_stats

        budget = Budget(rollouts=rollouts, max_tokens=self.max_tokens,
                        time_limit_s=self.time_limit_s)  # fmt: skip
        components = self.components
        if algorithm == "greedy" and components.reward_model is not None:
            # one chain: its scores choose nothing, and on a CPU they cost as much as the chain
            components = dataclasses.replace(components, reward_model=None)
        r = await run_search(algorithm, problem, components, budget, self.config)  # type: ignore[arg-type]
        return Outcome(r.answer, r.usage.tokens, r.usage.elapsed_s, r.stopped_by, r.usage.rollouts,
                       tree_stats(r.tree, r.usage))  # fmt: skip


class RemoteSolver:
    """Searches on a running server (its search settings and caps apply), with its expansion
    cache off so every problem is sampled afresh. A full queue (429, or 503 after waiting) is
    retried after `Retry-After`, up to `max_wait_s`; any other refusal (a budget above the
    server's caps, say) stops the run."""

    def __init__(
        self,
        client: Any,
        *,
        max_tokens: int | None = None,
        time_limit_s: float | None = None,
        max_wait_s: float = 600.0,
    ) -> None:
        self.client = client
        self.max_tokens = max_tokens
        self.time_limit_s = time_limit_s
        self.max_wait_s = max_wait_s
        self.models: dict[str, Any] = {}

    async def solve(self, problem: str, algorithm: str, rollouts: int) -> Outcome:
        from clients.client import RstarError

        budget = {"rollouts": rollouts, "max_tokens": self.max_tokens,
                  "time_limit_s": self.time_limit_s}  # fmt: skip
        t0 = time.monotonic()
        while True:
            try:
                r = await self.client.solve(
                    problem, algorithm=algorithm, budget=budget, cache=False
                )
                break
            except RstarError as e:
                if e.status in (429, 503) and time.monotonic() - t0 < self.max_wait_s:
                    await asyncio.sleep(e.retry_after or 1.0)
                    continue
                if e.status >= 500:
                    raise  # this problem failed (a deadline overrun, say); the run goes on
                raise EvalError(f"the server refused the request: {e}") from e
            except (httpx.ConnectError, httpx.RemoteProtocolError) as e:
                raise EvalError(f"cannot reach the server: {e}") from e
        if not self.models:
            self.models = r.models.model_dump()
        return Outcome(r.answer, r.usage.tokens, r.usage.elapsed_s, r.stopped_by, r.usage.rollouts)


# --------------------------------------------------------------------------- the run


@dataclass
class Tally:
    """Running figures of one (algorithm, budget), for progress displays."""

    total: int
    done: int = 0
    correct: int = 0
    errors: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.done if self.done else None


ProgressFn = Callable[[RunKey, dict[RunKey, Tally]], None]


def _read_results(path: Path) -> dict[tuple[str, int, str], dict]:
    """Finished records by (algorithm, budget, id); the last line wins; a line cut short by a
    killed run is skipped."""
    out: dict[tuple[str, int, str], dict] = {}
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").split("\n"):
        with contextlib.suppress(ValueError, KeyError, TypeError):
            rec = json.loads(line)
            out[(rec["algorithm"], int(rec["budget"]), str(rec["id"]))] = rec
    return out


def check_out_dir(out_dir: str | Path, info: dict[str, Any], resume: bool) -> None:
    """An output folder with results needs `resume`, and then the same data file."""
    out_dir = Path(out_dir)
    has_results = (out_dir / RESULTS).exists() and (out_dir / RESULTS).stat().st_size > 0
    if has_results and not resume:
        raise EvalError(f"{out_dir} already holds results: pass --resume, or another --out")
    prev = out_dir / REPORT
    if resume and prev.exists():
        with contextlib.suppress(ValueError):
            old = json.loads(prev.read_text()).get("data", {}).get("sha256")
            new = info.get("data", {}).get("sha256")
            if old and new and old != new:
                raise EvalError(f"{out_dir} holds results of another data file (sha256 {old})")


async def evaluate(
    problems: Sequence[Problem],
    keys: Sequence[RunKey],
    solver: Solver,
    out_dir: str | Path,
    *,
    concurrency: int = 1,
    grader: Grader | None = None,
    resume: bool = False,
    progress: ProgressFn | None = None,
    info: dict[str, Any] | None = None,
    max_failures: int = 10,
) -> dict[str, Any]:
    """Search every problem with every (algorithm, budget), `concurrency` problems at once, and
    write results.jsonl (as they finish), report.json and the plot (also when interrupted).
    Returns the report. A problem whose search raises is recorded with its error and counts as
    wrong (and is retried by a resumed run); if the first `max_failures` all fail, the run
    stops with EvalError."""
    out_dir = Path(out_dir)
    info = dict(info or {})
    grader = grader or default_grader()
    out_dir.mkdir(parents=True, exist_ok=True)
    check_out_dir(out_dir, info, resume)
    results = out_dir / RESULTS
    ids = {p.id for p in problems}
    records: dict[tuple[str, int, str], dict] = {
        k: r for k, r in _read_results(results).items() if k[2] in ids
    }
    tallies = {k: Tally(len(problems)) for k in keys}
    for (alg, budget, _), rec in records.items():
        if (t := tallies.get(RunKey(alg, budget))) is not None and not rec.get("error"):
            t.done += 1
            t.correct += bool(rec["correct"])
    jobs = [(k, p) for k in keys for p in problems
            if (rec := records.get((k.algorithm, k.budget, p.id))) is None
            or rec.get("error")]  # fmt: skip
    sem = asyncio.Semaphore(max(1, concurrency))
    state = {"ok": 0, "failed": 0}
    started = time.time()

    def finish(status: str) -> dict[str, Any]:
        info["models"] = info.get("models") or solver.models
        report = build_report(problems, keys, records, info, status=status)
        report["started"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started))
        report["wall_s"] = round(time.time() - started, 2)
        (out_dir / REPORT).write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
        with contextlib.suppress(Exception):  # a plot must never lose the report
            plot(report, out_dir / PLOT)
        return report

    with results.open("a", encoding="utf-8") as sink:

        async def one(key: RunKey, p: Problem) -> None:
            async with sem:
                t0 = time.monotonic()
                error = None
                try:
                    out = await solver.solve(p.problem, key.algorithm, key.budget)
                except EvalError:
                    raise
                except Exception as e:
                    out = Outcome(None, 0, round(time.monotonic() - t0, 4))
                    error = f"{type(e).__name__}: {e}"
                correct = out.answer is not None and await grader.aequal(p.answer, out.answer)
                tree = None
                if out.tree is not None:  # was the gold answer among those the search reached?
                    tree = dict(out.tree, gold_among=False)
                    for candidate in out.tree["candidates"]:
                        if await grader.aequal(p.answer, candidate):
                            tree["gold_among"] = True
                            break
            rec = {
                "algorithm": key.algorithm,
                "budget": key.budget,
                "id": p.id,
                "gold": p.answer,
                "answer": out.answer,
                "correct": bool(correct),
                "tokens": out.tokens,
                "seconds": round(out.seconds, 4),
                "rollouts": out.rollouts,
                "stopped_by": out.stopped_by,
                "error": error,
            }
            if tree is not None:
                rec["tree"] = tree
            sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
            sink.flush()
            records[(key.algorithm, key.budget, p.id)] = rec
            t = tallies[key]
            t.done += 1
            t.correct += bool(correct)
            t.errors += error is not None
            state["failed" if error else "ok"] += 1
            if progress is not None:
                progress(key, tallies)
            if error and state["ok"] == 0 and state["failed"] >= max_failures:
                raise EvalError(f"the first {state['failed']} searches all failed; last: {error}")

        status = "interrupted"
        try:
            try:
                async with asyncio.TaskGroup() as tg:
                    for key, p in jobs:
                        tg.create_task(one(key, p))
            except* EvalError as eg:
                status = "failed"
                raise eg.exceptions[0] from None
            status = "complete"
        finally:
            report = finish(status)
    return report


def build_report(
    problems: Sequence[Problem],
    keys: Sequence[RunKey],
    records: dict[tuple[str, int, str], dict],
    info: dict[str, Any],
    status: str = "complete",
) -> dict[str, Any]:
    runs = []
    for k in keys:
        recs = [r for p in problems if (r := records.get((k.algorithm, k.budget, p.id)))]
        n = len(recs)
        correct = sum(bool(r["correct"]) for r in recs)
        runs.append({
            "algorithm": k.algorithm,
            "budget": k.budget,
            "n": n,
            "correct": correct,
            "accuracy": round(correct / n, 6) if n else None,
            "mean_tokens": round(sum(r["tokens"] for r in recs) / n, 2) if n else None,
            "mean_seconds": round(sum(r["seconds"] for r in recs) / n, 4) if n else None,
            "answered": sum(r["answer"] is not None for r in recs),
            "errors": sum(bool(r.get("error")) for r in recs),
            "complete": n == len(problems),
            **({"tree": summary} if (summary := tree_summary(recs)) else {}),
            "records": [{f: r.get(f) for f in ("id", "gold", "answer", "correct", "tokens",
                         "seconds", "rollouts", "stopped_by", "error")} for r in recs],
        })  # fmt: skip
    return {"status": status, **info, "problems": len(problems), "runs": runs}


def tree_summary(recs: Sequence[dict]) -> dict[str, Any] | None:
    """Where one (algorithm, budget)'s steps went, over the records that carry tree statistics:
    the shares of generated steps dropped as invalid (by kind) and as duplicates, the mean
    depth reached, and how often the gold answer was among the candidates (`gold_reached`)
    against how often it was the one returned when it was (`picked_when_reached`)."""
    trees = [(r, t) for r in recs if (t := r.get("tree"))]
    if not trees:
        return None
    steps = sum(t["steps"] for _, t in trees)
    invalid = sum(t["invalid"] for _, t in trees)
    dups = sum(t["duplicates"] for _, t in trees)
    kinds: dict[str, int] = {}
    for _, t in trees:
        for kind, n in t["invalid_by_kind"].items():
            kinds[kind] = kinds.get(kind, 0) + n
    reached = [r for r, t in trees if t["gold_among"]]
    n = len(trees)
    return {
        "n": n,
        "invalid_share": round(invalid / steps, 4) if steps else None,
        "invalid_by_kind": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
        "duplicate_share": round(dups / (steps + dups), 4) if steps + dups else None,
        "mean_steps": round(steps / n, 2),
        "mean_max_depth": round(sum(t["max_depth"] for _, t in trees) / n, 2),
        "mean_candidates": round(sum(len(t["candidates"]) for _, t in trees) / n, 2),
        "gold_reached": round(len(reached) / n, 4),
        "picked_when_reached": (
            round(sum(bool(r["correct"]) for r in reached) / len(reached), 4) if reached else None
        ),
    }


# --------------------------------------------------------------------------- outputs


def plot(report: dict[str, Any], path: str | Path) -> Path:
    """Accuracy against mean generated tokens per problem (log x), a line per algorithm with
    its points labelled by budget."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display
    from matplotlib.ticker import FuncFormatter, LogLocator, PercentFormatter

    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    top = 0.0
    for i, alg in enumerate(ALGORITHMS):
        pts = sorted((r["budget"], max(r["mean_tokens"], 1.0), r["accuracy"])
                     for r in report["runs"] if r["algorithm"] == alg and r["n"])  # fmt: skip
        if not pts:
            continue
        xs, ys = [x for _, x, _ in pts], [y for _, _, y in pts]
        top = max(top, *ys)
        ax.plot(xs, ys, marker="o", color=f"C{i}", label=LABELS[alg])  # a colour per algorithm
        if alg != "greedy":
            for b, x, y in pts:
                ax.annotate(str(b), (x, y), textcoords="offset points", xytext=(4, 5), fontsize=8)
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
    ax.legend(title="points: budget (rollouts)", fontsize=8, title_fontsize=8)
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
        t.add_row(LABELS[r["algorithm"]], str(r["budget"]), str(r["n"]), str(r["correct"]),
                  acc, tok, sec, str(r["errors"]))  # fmt: skip
    return t


@dataclass
class EvalProgress:
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
        if self.tty:
            self.bar.start()
        self._last = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.tty:
            self.bar.stop()

    def status(self, text: str) -> None:
        self.console.print(f"[dim]{text}[/dim]")

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
