"""The evaluation core shared by `rstar eval` (and the benchmark scripts that call it) and the
round trainer's eval phase: algorithms × budgets over a problem set, each answer graded, written
as it goes and reported. It knows nothing of HTTP: a `Solver` searches (`InProcessSolver` here,
on injected components; `clients.eval.RemoteSolver` against a running server), so the layers
above it (training/, clients/) both stand on it and neither on the other.

    from evaluation import InProcessSolver, evaluate, load_problems, plan

    problems = load_problems("gsm8k_test.jsonl", limit=50)      # DataError names file:line
    solver = InProcessSolver(Components(policy, sandbox, reward_model), SearchConfig())
    report = await evaluate(problems, plan(["greedy", "mcts"], [4, 16]), solver, Path("out"))

Every problem of every (algorithm, budget) is searched once, up to `concurrency` problems at
once on the one engine, and its answer graded against the gold one with the project's grader.
In `out_dir`: `results.jsonl` (a line per finished problem, appended as it finishes, so a
killed run keeps them; `resume=True` skips those), `report.json` (config, data file and sha256,
model versions, accuracy / mean tokens / mean seconds per (algorithm, budget) with per-problem
records) and `accuracy_vs_tokens.png`.

The gold answer is never given to the search (that would turn its terminal rewards into the
training signal); it is only used to grade the returned answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from evaluation.jsonl import prepare_append
from evaluation.problems import Problem
from evaluation.records import (
    PLOT,
    RECORD_FIELDS,
    REPORT,
    RESULTS,
    STOP_RULES,
    RecordKey,
    RunKey,
    Tally,
    build_report,
    read_results,
)
from evaluation.report import plot
from search import ALGORITHMS
from search.formats import STEP_FORMATS
from search.grading import Grader, default_grader

log = logging.getLogger(__name__)


class EvalError(RuntimeError):
    """The run cannot go on (a server that refuses the requests, an engine that fails them all,
    an output folder holding another run)."""


# --------------------------------------------------------------------------- the plan


# rollouts allowed under a token budget: never the limit that binds
TOKEN_BUDGET_ROLLOUTS = 1000


def parse_budget(text: str | int) -> tuple[int, int, str]:
    """ "8" → 8 rollouts; "650tok" (or "650t") → a budget of 650 generated tokens per search;
    a suffix ":confident" or ":unbeatable" → the same budget, stopped once the answer is
    settled. Returns (rollouts, token budget or 0, stop rule)."""
    t = str(text).strip().lower()
    m = re.fullmatch(r"(\d+)\s*(tok|t)?\s*(?::\s*(\w+))?", t)
    if m is None or int(m.group(1)) < 1 or (m.group(3) or "budget") not in STOP_RULES:
        raise ValueError(
            f"budget {text!r}: a positive rollout count (8) or token count (650tok), "
            "optionally with :confident or :unbeatable (8:confident)"
        )
    n, rule = int(m.group(1)), m.group(3) or "budget"
    return (TOKEN_BUDGET_ROLLOUTS, n, rule) if m.group(2) else (n, 0, rule)


def plan(
    algorithms: Iterable[str],
    budgets: Iterable[int | str],
    step_formats: Iterable[str] = ("code",),
) -> list[RunKey]:
    """Every algorithm at every budget in every step format; greedy runs once per format (one
    chain, budget 1, spent: one chain has nothing to settle)."""
    formats = list(dict.fromkeys(step_formats))
    for fmt in formats:
        if fmt not in STEP_FORMATS:
            raise ValueError(f"unknown step format {fmt!r}; choose from {', '.join(STEP_FORMATS)}")
    if not formats:
        raise ValueError("no step format: give code, text or both")
    parsed = sorted(
        {parse_budget(b) for b in budgets},
        key=lambda b: (b[1] > 0, b[1], b[0], STOP_RULES.index(b[2])),
    )
    if not parsed:
        raise ValueError("no budget: give rollout counts (8) or token counts (650tok)")
    keys: list[RunKey] = []
    for alg in algorithms:
        if alg not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {alg!r}; choose from {', '.join(ALGORITHMS)}")
        for b, tok, rule in [(1, 0, "budget")] if alg == "greedy" else parsed:
            for fmt in formats:
                if RunKey(alg, b, tok, rule, fmt) not in keys:
                    keys.append(RunKey(alg, b, tok, rule, fmt))
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
    tokens_saved: int | None = None  # the estimate, with a stop rule


class Solver(Protocol):
    models: dict[str, Any]  # {"policy", "policy_engine", "reward_model", "versions"}

    async def solve(
        self,
        problem: str,
        algorithm: str,
        rollouts: int,
        max_tokens: int | None = None,
        stop_when: str = "budget",
        step_format: str = "code",
    ) -> Outcome: ...


class InProcessSolver:
    """Searches on injected components (one shared engine, sandbox and reward model). A run in
    another step format than `config`'s searches with its config in `configs`, else with
    `config` in that format."""

    def __init__(
        self,
        components: Any,
        config: Any = None,
        *,
        max_tokens: int | None = None,
        time_limit_s: float | None = None,
        settle_confidence: float | None = None,
        models: dict[str, Any] | None = None,
        configs: dict[str, Any] | None = None,
    ) -> None:
        from search import SearchConfig

        self.components = components
        self.config = config or SearchConfig()
        self.configs = configs or {}
        self.max_tokens = max_tokens
        self.time_limit_s = time_limit_s
        self.settle_confidence = settle_confidence
        self.models = models or {}

    async def solve(
        self,
        problem: str,
        algorithm: str,
        rollouts: int,
        max_tokens: int | None = None,
        stop_when: str = "budget",
        step_format: str = "code",
    ) -> Outcome:
        from search import Budget, run_search
        from search.formats import format_prompt_style
        from search.tree_stats import tree_stats

        settle = {"settle_confidence": self.settle_confidence} if self.settle_confidence else {}
        budget = Budget(
            rollouts=rollouts,
            max_tokens=max_tokens or self.max_tokens,
            time_limit_s=self.time_limit_s,
            stop_when=stop_when,  # type: ignore[arg-type]
            **settle,
        )
        components = self.components
        if algorithm == "greedy" and components.reward_model is not None:
            # one chain: its scores choose nothing, and on a CPU they cost as much as the chain
            components = dataclasses.replace(components, reward_model=None)
        config = self.config
        if step_format != config.step_format:
            config = self.configs.get(step_format) or config.model_copy(
                update={
                    "step_format": step_format,
                    "prompt_style": format_prompt_style(step_format, config.prompt_style),
                }
            )
        r = await run_search(algorithm, problem, components, budget, config)  # type: ignore[arg-type]
        return Outcome(
            r.answer,
            r.usage.tokens,
            r.usage.elapsed_s,
            r.stopped_by,
            r.usage.rollouts,
            tree_stats(r.tree, r.usage),
            r.usage.tokens_saved,
        )


# --------------------------------------------------------------------------- the run


ProgressFn = Callable[[RunKey, dict[RunKey, Tally]], None]


def check_out_dir(out_dir: str | Path, info: dict[str, Any], resume: bool) -> None:
    """An output folder with results needs `resume`, and then the same data file and the same
    search settings: records of two settings under one key would be one run's in the report."""
    out_dir = Path(out_dir)
    has_results = (out_dir / RESULTS).exists() and (out_dir / RESULTS).stat().st_size > 0
    if has_results and not resume:
        raise EvalError(f"{out_dir} already holds results: pass --resume, or another --out")
    prev = out_dir / REPORT
    if not (resume and has_results and prev.exists()):
        return
    try:
        old_info = json.loads(prev.read_text())
    except ValueError:
        return
    old = old_info.get("data", {}).get("sha256")
    new = info.get("data", {}).get("sha256")
    if old and new and old != new:
        raise EvalError(f"{out_dir} holds results of another data file (sha256 {old})")
    old_config, new_config = old_info.get("config", {}), info.get("config", {})
    changed = _changed(old_config, new_config, RUN_WIDE)
    old_search, new_search = old_config.get("search"), new_config.get("search")
    if isinstance(old_search, dict) and isinstance(new_search, dict):
        changed += _changed(old_search, new_search, old_search.keys())
    if changed:
        raise EvalError(
            f"{out_dir} holds results searched with other settings ({', '.join(changed)}): "
            "resume with those, or write to another --out"
        )


# what every record of a run was searched under, beside the search settings (a budget and a
# stop rule are in the run key)
RUN_WIDE = ("max_tokens", "time_limit_s", "settle_confidence")


def _changed(old: dict[str, Any], new: dict[str, Any], keys: Any) -> list[str]:
    """`key old → new` for each of `keys` both hold with different values."""
    return [
        f"{k} {old[k]!r} → {new[k]!r}"
        for k in sorted(set(keys) & old.keys() & new.keys())
        if old[k] != new[k]
    ]


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
    prepare_append(results, RECORD_FIELDS)
    records: dict[RecordKey, dict] = {
        k: r for k, r in read_results(results).items() if k[-1] in ids
    }
    tallies = {k: Tally(len(problems)) for k in keys}
    for (alg, budget, tokens, rule, fmt, _), rec in records.items():
        t = tallies.get(RunKey(alg, budget, tokens, rule, fmt))
        if t is not None and not rec.get("error"):
            t.done += 1
            t.correct += bool(rec["correct"])
    jobs = [
        (k, p)
        for k in keys
        for p in problems
        if (rec := records.get(k.record_key(p.id))) is None or rec.get("error")
    ]
    sem = asyncio.Semaphore(max(1, concurrency))
    state = {"ok": 0, "failed": 0}
    started = time.time()

    def finish(status: str) -> dict[str, Any]:
        info["models"] = info.get("models") or solver.models
        # a folder resumed at another budget keeps the runs it already holds in its report
        held = sorted({RunKey(*k[:-1]) for k in records} - set(keys))
        report = build_report(problems, [*keys, *held], records, info, status=status)
        report["started"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started))
        report["wall_s"] = round(time.time() - started, 2)
        (out_dir / REPORT).write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
        try:  # after the report: a plot that fails must not lose it
            plot(report, out_dir / PLOT)
        except Exception as e:
            log.warning("%s: no plot (%s: %s)", out_dir / PLOT, type(e).__name__, e)
        return report

    with results.open("a", encoding="utf-8") as sink:

        async def one(key: RunKey, p: Problem) -> None:
            async with sem:
                t0 = time.monotonic()
                error = None
                try:
                    out = await solver.solve(
                        p.problem,
                        key.algorithm,
                        key.budget,
                        key.tokens or None,
                        key.stop_when,
                        step_format=key.step_format,
                    )
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
                **key.fields(),
                "id": p.id,
                "gold": p.answer,
                "answer": out.answer,
                "correct": bool(correct),
                "tokens": out.tokens,
                "seconds": round(out.seconds, 4),
                "rollouts": out.rollouts,
                "stopped_by": out.stopped_by,
                "tokens_saved": out.tokens_saved,
                "error": error,
            }
            if tree is not None:
                rec["tree"] = tree
            sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
            sink.flush()
            records[key.record_key(p.id)] = rec
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
