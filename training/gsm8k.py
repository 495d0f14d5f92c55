"""GSM8K reference solutions as code-augmented step trajectories (the bootstrap round, round 0).

rStar-Math bootstraps its first policy from a strong model's trajectories; here the human
reference solutions of GSM8K's train split stand in for them. A reference solution is lines of
reasoning whose arithmetic carries calculator annotations, then the gold answer:

    Natalia sold 48/2 = <<48/2=24>>24 clips in May.
    Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.
    #### 72

Each annotated line becomes a step: its text without the annotations is the `# Step k:` comment,
each annotation `<<expr=value>>` becomes an assignment `name = expr` (a literal equal to an
earlier result is replaced by that result's variable, so the code carries the dataflow), and the
last step prints the variable holding the answer, rounded to two decimals. Lines without
annotations join the next step's comment (or, at the end, form a final step that prints the
answer). Rows with no annotation, or whose expressions are not plain arithmetic, are not
converted. (A row whose last computation was left unannotated prints an intermediate result;
verification rejects it.)

`verify` then runs the whole program in the sandbox and checks what it prints against the gold
answer with the project's grader; only verified solutions become training trajectories.
"""

from __future__ import annotations

import asyncio
import builtins
import keyword
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from search.extract import Trajectory, TrajectoryStep
from search.grading import Grader
from search.protocols import ExecLimits, Sandbox
from search.steps import (
    CODE_END,
    last_line,
    parse_step,
    path_code,
    render_answer,
    render_output,
    render_step,
    syntax_error,
)

_ANNOTATION = re.compile(r"<<([^<>]*)>>")
_ARITHMETIC = re.compile(r"[0-9.+\-*/() ]+")
_NUMBER = re.compile(r"(?<![\w.])(\d+\.\d*|\.\d+|\d+)(?![\w.])")
_LEADING_ZEROS = re.compile(r"(?<![\d.])0+(?=\d)")
_WORD = re.compile(r"[A-Za-z]+")
_ROUND = 2  # decimals the final print keeps
_STOPWORDS_TEXT = """
a an and are as at be by each every for from has have he her his in into is it its of off on or
she so than that the their them then there they this to was were which who will with more less all
times now over only out up we you your our one two three four five six seven eight nine ten am pm
would could should can did do does had got get after before since if when while what how many
much about
"""
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


class Gsm8kStep(BaseModel):
    model_config = ConfigDict(frozen=True)

    reasoning: str
    code: str
    final: bool = False

    def body(self, index: int) -> str:
        """`# Step k: ...` comment lines, then the code (the step as the policy writes it)."""
        lines = self.reasoning.splitlines() or [""]
        comment = [f"# Step {index}: {lines[0]}".rstrip()] + [
            f"# {ln}".rstrip() for ln in lines[1:]
        ]
        return "\n".join([*comment, self.code])


class Gsm8kSolution(BaseModel):
    """A converted reference solution, not yet verified."""

    model_config = ConfigDict(frozen=True)

    problem_id: str | None
    problem: str
    gold: str
    steps: list[Gsm8kStep]

    def bodies(self) -> list[str]:
        return [s.body(i) for i, s in enumerate(self.steps, 1)]

    def step_texts(self) -> list[str]:
        """Steps as they re-enter a prompt (the final one without its output and answer)."""
        return [render_step(b, s.final) for b, s in zip(self.bodies(), self.steps, strict=True)]

    def program(self) -> str:
        """The code of the whole path: what `verify` runs."""
        return path_code([s.code for s in self.steps])


class Rejected(BaseModel):
    """A row that could not be converted or did not verify, and why."""

    model_config = ConfigDict(frozen=True)

    problem_id: str | None
    kind: str  # no_solution, bad_gold, no_annotations, not_arithmetic, syntax, format,
    # runtime, timeout, killed, no_output, wrong_answer
    reason: str


def row_fields(row: Mapping[str, str]) -> tuple[str | None, str, str, str]:
    """(id, problem, reference solution, gold) from either shape of a GSM8K row: the original
    `{"question", "answer": "...\\n#### 72"}` or ours `{"id", "problem", "answer", "solution"}`."""
    problem = row.get("problem") or row.get("question") or ""
    if "solution" in row:
        solution, gold = row["solution"], row.get("answer", "")
    else:
        solution, gold = row.get("answer", ""), ""
    if not gold and "####" in solution:
        gold = solution.rsplit("####", 1)[1]
    return row.get("id"), problem, solution, gold.strip().replace(",", "")


def _as_float(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("$", "").strip())
    except ValueError:
        return None


def _name_for(after: str, used: set[str]) -> str:
    """A variable name from the words after an annotation, up to the clause's end:
    "24 clips in May." -> clips_may; "$0.2 per minute" -> per_minute; "$10." -> result."""
    clause = re.split(r"[.,;:!?()]\s|[.,;:!?()]$", after[:60])[0]
    words = [w.lower() for w in _WORD.findall(clause)]
    content = [w for w in words if len(w) >= 2 and w not in _STOPWORDS][:2]
    base = "_".join(content)
    if not base or keyword.iskeyword(base) or hasattr(builtins, base):
        base = "result"
    name, n = base, 2
    while name in used:
        name, n = f"{base}_{n}", n + 1
    used.add(name)
    return name


def convert_row(row: Mapping[str, str], link_variables: bool = True) -> Gsm8kSolution | Rejected:
    """The reference solution of a GSM8K row as steps, or why it cannot be converted."""
    pid, problem, solution, gold = row_fields(row)
    if not problem.strip() or not solution.strip():
        return Rejected(problem_id=pid, kind="no_solution", reason="no problem or no solution")
    if not gold or _as_float(gold) is None:
        return Rejected(
            problem_id=pid, kind="bad_gold", reason=f"gold answer {gold!r} is not a number"
        )
    lines = [ln.strip() for ln in solution.split("\n")]
    lines = [ln for ln in lines if ln and not ln.startswith("####")]

    steps: list[tuple[str, list[str]]] = []  # (reasoning, code lines)
    pending: list[str] = []  # reasoning lines waiting for an annotated line
    results: list[tuple[float | None, str]] = []  # (annotated value, variable), in order
    used: set[str] = set()
    for line in lines:
        matches = list(_ANNOTATION.finditer(line))
        text = " ".join(_ANNOTATION.sub("", line).split())
        if not matches:
            pending.append(text)
            continue
        code: list[str] = []
        for m in matches:
            expr, sep, value = m.group(1).partition("=")
            if not sep or "=" in value:
                return Rejected(
                    problem_id=pid,
                    kind="not_arithmetic",
                    reason=f"{m.group(0)!r} is not expr=value",
                )
            expr = _LEADING_ZEROS.sub("", expr.strip())
            if not expr or not _ARITHMETIC.fullmatch(expr) or "**" in expr:
                return Rejected(
                    problem_id=pid,
                    kind="not_arithmetic",
                    reason=f"{m.group(0)!r} is not arithmetic",
                )
            if link_variables:
                expr = _link(expr, results)
            name = _name_for(line[m.end() :], used)
            code.append(f"{name} = {expr}")
            results.append((_as_float(value), name))
        steps.append(("\n".join([*pending, text]), code))
        pending = []
    if not steps:
        return Rejected(problem_id=pid, kind="no_annotations", reason="no calculator annotations")

    # The answer is the latest result equal to the gold answer, else the last result.
    target = _as_float(gold)
    answer_var = next((n for v, n in reversed(results) if v == target), results[-1][1])
    # Rounded, so float noise (14.000000000000002) neither fails the check nor is learned.
    show = f"print(round({answer_var}, {_ROUND}))"
    if pending:  # closing lines without arithmetic: a final step of their own
        steps.append(("\n".join(pending), [show]))
    else:
        steps[-1][1].append(show)
    out = [
        Gsm8kStep(reasoning=r, code="\n".join(c), final=i == len(steps) - 1)
        for i, (r, c) in enumerate(steps)
    ]
    sol = Gsm8kSolution(problem_id=pid, problem=problem.strip(), gold=gold, steps=out)
    err = syntax_error(sol.program())
    if err:
        return Rejected(problem_id=pid, kind="syntax", reason=err)
    for body, step in zip(sol.bodies(), sol.steps, strict=True):
        parsed = parse_step(body, CODE_END if step.final else "<end_of_step>")
        if not parsed.ok:
            return Rejected(problem_id=pid, kind="format", reason=parsed.error or "")
    return sol


def _link(expr: str, results: list[tuple[float | None, str]]) -> str:
    """Replace each number literal equal to an earlier result by that result's variable."""

    def sub(m: re.Match[str]) -> str:
        v = float(m.group(0))
        for value, name in reversed(results):
            if value is not None and value == v:
                return name
        return m.group(0)

    return _NUMBER.sub(sub, expr)


def answer_text(gold: str) -> str:
    return f"The answer is \\boxed{{{gold}}}."


def to_trajectory(sol: Gsm8kSolution, stdout: str) -> Trajectory:
    """The verified solution as a trajectory (the final step carries its output and answer)."""
    steps = []
    for body, text, step in zip(sol.bodies(), sol.step_texts(), sol.steps, strict=True):
        output = None
        if step.final:
            output = stdout.strip()
            text += render_output(output) + render_answer(answer_text(sol.gold))
        parsed = parse_step(body, CODE_END if step.final else "<end_of_step>")
        steps.append(
            TrajectoryStep(text=text, reasoning=parsed.reasoning, code=step.code, output=output)
        )
    return Trajectory(
        problem=sol.problem,
        steps=steps,
        answer=sol.gold,
        answer_text=answer_text(sol.gold),
        correct=True,
        problem_id=sol.problem_id,
        source="gsm8k",
    )


async def verify(
    sol: Gsm8kSolution,
    sandbox: Sandbox,
    grader: Grader,
    limits: ExecLimits | None = None,
) -> Trajectory | Rejected:
    """Run the solution's program in `sandbox`; a trajectory if it runs and the last line it
    prints equals the gold answer (by `grader`), else why not."""
    limits = limits or ExecLimits(timeout_s=5.0)
    res = await sandbox.run(sol.program(), limits)
    if res.killed == "sandbox":  # the sandbox itself failed (a worker replaced): once more
        res = await sandbox.run(sol.program(), limits)
    pid = sol.problem_id
    if not res.ok:
        kind = "timeout" if res.timed_out else ("killed" if res.killed else "runtime")
        detail = (res.error or "").strip().splitlines()
        return Rejected(problem_id=pid, kind=kind, reason=detail[-1] if detail else kind)
    printed = last_line(res.stdout)
    if printed is None:
        return Rejected(problem_id=pid, kind="no_output", reason="the program printed nothing")
    if not await grader.aequal(sol.gold, printed):
        return Rejected(
            problem_id=pid, kind="wrong_answer", reason=f"printed {printed!r}, gold {sol.gold!r}"
        )
    return to_trajectory(sol, res.stdout)


@dataclass
class BootstrapStats:
    rows: int = 0
    converted: int = 0
    verified: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # reason kind -> rows

    def reject(self, r: Rejected) -> None:
        self.rejected[r.kind] = self.rejected.get(r.kind, 0) + 1


async def bootstrap(
    rows: Iterable[Mapping[str, str]],
    sandbox: Sandbox,
    grader: Grader,
    concurrency: int = 8,
    link_variables: bool = True,
    limits: ExecLimits | None = None,
    progress: Callable[[BootstrapStats], None] | None = None,
    progress_every: int = 500,
) -> tuple[list[Trajectory], list[Rejected], BootstrapStats]:
    """Convert and verify every row (`concurrency` sandbox runs in flight); returns the verified
    trajectories in row order, the rejected rows with reasons, and the counts."""
    stats = BootstrapStats()
    sem = asyncio.Semaphore(concurrency)

    async def one(row: Mapping[str, str]) -> Trajectory | Rejected:
        conv = convert_row(row, link_variables)
        if isinstance(conv, Rejected):
            result: Trajectory | Rejected = conv
        else:
            stats.converted += 1
            async with sem:
                result = await verify(conv, sandbox, grader, limits)
            if isinstance(result, Trajectory):
                stats.verified += 1
        if isinstance(result, Rejected):
            stats.reject(result)
        stats.rows += 1
        if progress is not None and stats.rows % progress_every == 0:
            progress(stats)
        return result

    results = await asyncio.gather(*(one(r) for r in rows))
    if progress is not None and stats.rows % progress_every:
        progress(stats)
    good = [r for r in results if isinstance(r, Trajectory)]
    bad = [r for r in results if isinstance(r, Rejected)]
    return good, bad, stats
