"""Training data from finished search trees (rStar-Math's self-evolution, issue 6). Pure logic.

From a tree searched with a gold answer (terminal reward ±1, so every terminal has `correct`):

- **SFT trajectories**: the top-k correct trajectories by mean Q of their steps. A trajectory
  is a root-to-terminal path; none may contain a failed (invalid) step.
- **Step preference pairs** (the paper's construction): at every expanded node, its valid
  children whose subtrees reach a correct answer are positives, the k with the highest Q kept;
  children whose subtrees reach only wrong answers are negatives, the k with the lowest Q kept;
  every positive is paired with every negative (k×k pairs, the paper's 2×2 per step). Both
  sides of a pair share the same prefix (the path to that node). Invalid children (failed
  code, malformed) are never paired: rStar-Math filters failed steps out before training.
  Children with no finished terminal below them carry no label and are skipped.
- **Final-answer pairs** (the paper's relaxation for the last step, where two trajectories
  with the same prefix rarely end in different answers): the k correct trajectories with the
  highest mean Q against the k wrong ones with the lowest, k×k pairs, the shared prefix being
  whatever steps they have in common.
- **Supported answers only** (`supported_only`, on in the rounds): a correct terminal counts as
  correct only when its code printed its answer (a line, or a number in one: `supported`). A
  model that prints 40 and writes \\boxed{42} has reasoned wrongly and guessed right; its path
  is label noise (what the paper's code-execution filter is meant to remove), so it is neither
  an SFT trajectory nor a positive, and counted in `unsupported`.

Records are pydantic models (`.model_dump_json()` for a JSONL line, `model_validate_json` back).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import product
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from search.grading import answers_equal
from search.protocols import ScoreRequest
from search.steps import ANSWER, OUTPUT, PromptStyle, render_prompt
from search.tree import Node, Tree


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)

    def to_json(self) -> str:
        """One JSONL line."""
        return self.model_dump_json()


class TrajectoryStep(_Record):
    text: str  # as it re-enters the prompt; a final step includes its output and answer
    reasoning: str = ""
    code: str = ""
    output: str | None = None
    q: float = 0.0
    visits: int = 0


class Trajectory(_Record):
    """One verified solution: the steps from the root to a correct terminal."""

    problem: str
    steps: list[TrajectoryStep]
    answer: str | None = None
    answer_text: str | None = None
    correct: bool | None = None
    mean_q: float = 0.0
    problem_id: str | None = None
    source: str = "mcts"  # "mcts" (a search tree) or e.g. "gsm8k" (a converted reference)

    def step_texts(self) -> list[str]:
        return [s.text for s in self.steps]


class PreferencePair(_Record):
    """Two continuations of the same prefix; the PPM should score `chosen` above `rejected`.

    The text the PPM reads for a side is `render_prompt(problem, prefix + [side], "bare")`
    (see `chosen_request` / `rejected_request` and models/ppm.py's `ppm_text`). For a final-answer
    pair a side may span several steps (everything after the common prefix), joined.
    """

    problem: str
    prefix: list[str]
    chosen: str
    rejected: str
    chosen_q: float
    rejected_q: float
    kind: Literal["step", "final"] = "step"
    problem_id: str | None = None

    def chosen_request(self) -> ScoreRequest:
        return ScoreRequest(self.problem, (*self.prefix, self.chosen))

    def rejected_request(self) -> ScoreRequest:
        return ScoreRequest(self.problem, (*self.prefix, self.rejected))


class SftExample(_Record):
    """A training text split into the prompt (no loss) and the completion (loss), except
    `no_loss` character spans of the completion: what the executor wrote (`<output>` blocks),
    which the policy never generates."""

    prompt: str
    completion: str
    no_loss: list[tuple[int, int]] = Field(default_factory=list)
    problem_id: str | None = None

    def segments(self) -> list[tuple[str, bool]]:
        """(text, trained) pieces in order; their concatenation is prompt + completion."""
        out: list[tuple[str, bool]] = [(self.prompt, False)]
        pos = 0
        for start, end in sorted(self.no_loss):
            if start > pos:
                out.append((self.completion[pos:start], True))
            out.append((self.completion[start:end], False))
            pos = max(pos, end)
        if pos < len(self.completion):
            out.append((self.completion[pos:], True))
        return [(t, trained) for t, trained in out if t]


class ExtractStats(BaseModel):
    """Counts over one or many trees; `merge` adds them up."""

    problems: int = 0
    problems_solved: int = 0  # at least one SFT trajectory
    problems_with_pairs: int = 0
    trajectories: int = 0
    step_pairs: int = 0
    final_pairs: int = 0
    unsupported: int = 0  # correct terminals whose answer the code never printed
    steps_per_trajectory: dict[int, int] = Field(default_factory=dict)  # steps -> trajectories

    @property
    def pairs(self) -> int:
        return self.step_pairs + self.final_pairs

    @property
    def mean_steps_per_trajectory(self) -> float:
        n = sum(self.steps_per_trajectory.values())
        return sum(k * v for k, v in self.steps_per_trajectory.items()) / n if n else 0.0

    def merge(self, other: ExtractStats) -> ExtractStats:
        hist = Counter(self.steps_per_trajectory)
        hist.update(other.steps_per_trajectory)
        return ExtractStats(
            problems=self.problems + other.problems,
            problems_solved=self.problems_solved + other.problems_solved,
            problems_with_pairs=self.problems_with_pairs + other.problems_with_pairs,
            trajectories=self.trajectories + other.trajectories,
            step_pairs=self.step_pairs + other.step_pairs,
            final_pairs=self.final_pairs + other.final_pairs,
            unsupported=self.unsupported + other.unsupported,
            steps_per_trajectory=dict(sorted(hist.items())),
        )

    def summary(self) -> dict[str, float | int]:
        return {
            "problems": self.problems,
            "problems_solved": self.problems_solved,
            "problems_with_pairs": self.problems_with_pairs,
            "trajectories": self.trajectories,
            "pairs": self.pairs,
            "step_pairs": self.step_pairs,
            "final_pairs": self.final_pairs,
            "unsupported": self.unsupported,
            "mean_steps_per_trajectory": round(self.mean_steps_per_trajectory, 3),
        }


class Extraction(BaseModel):
    trajectories: list[Trajectory]
    pairs: list[PreferencePair]
    stats: ExtractStats


# --- helpers -----------------------------------------------------------------------------------


def _valid(node: Node) -> bool:
    return node.status != "invalid" and node.error is None


def _mean_q(path: Sequence[Node]) -> float:
    return sum(n.q for n in path) / len(path) if path else 0.0


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def supported(node: Node) -> bool:
    """Did the terminal's code print its answer: a printed line, or a number in one ("The total
    is 7"), graded equal to it?"""
    if node.answer is None:
        return False
    printed = [ln.strip() for ln in (node.output or "").splitlines() if ln.strip()]
    printed += [m for ln in printed for m in _NUMBER.findall(ln) if m != ln]
    return any(x == node.answer or answers_equal(x, node.answer) for x in printed)


def _credited(node: Node, supported_only: bool) -> bool:
    return node.correct is True and (not supported_only or supported(node))


def _outcomes(tree: Tree, supported_only: bool = False) -> tuple[list[bool], list[bool]]:
    """Per node: does its subtree hold a correct terminal / a wrong one (valid nodes only; an
    unsupported correct terminal is neither when `supported_only`)."""
    has_correct = [False] * len(tree)
    has_wrong = [False] * len(tree)
    # children are always added after their parent, so ids descend bottom-up
    for node in reversed(tree.nodes):
        if not _valid(node):
            continue
        if node.status == "terminal":
            has_correct[node.id] |= _credited(node, supported_only)
            has_wrong[node.id] |= node.correct is False
        if node.parent is not None:
            has_correct[node.parent] |= has_correct[node.id]
            has_wrong[node.parent] |= has_wrong[node.id]
    return has_correct, has_wrong


def _ranked_paths(tree: Tree, correct: bool, supported_only: bool = False) -> list[list[Node]]:
    """Paths to terminals with `correct` (and, for correct ones, a supported answer when
    `supported_only`) and no failed step, best mean Q first (ties: the terminal found first)."""
    paths = []
    for t in tree.terminals():
        if t.correct is not correct or (correct and not _credited(t, supported_only)):
            continue
        path = tree.path(t)
        if path and all(_valid(n) for n in path):
            paths.append(path)
    paths.sort(key=lambda p: (-_mean_q(p), p[-1].id))
    return paths


def _trajectory(tree: Tree, path: list[Node], problem_id: str | None) -> Trajectory:
    last = path[-1]
    return Trajectory(
        problem=tree.problem,
        steps=[
            TrajectoryStep(
                text=n.text,
                reasoning=n.reasoning,
                code=n.code,
                output=n.output,
                q=n.q,
                visits=n.visits,
            )
            for n in path
        ],
        answer=last.answer,
        answer_text=last.answer_text,
        correct=last.correct,
        mean_q=_mean_q(path),
        problem_id=problem_id,
    )


# --- extraction --------------------------------------------------------------------------------


def sft_trajectories(
    tree: Tree, k: int = 2, problem_id: str | None = None, supported_only: bool = False
) -> list[Trajectory]:
    """The top-`k` correct trajectories by mean Q of their steps (none with a failed step)."""
    paths = _ranked_paths(tree, True, supported_only)[:k]
    return [_trajectory(tree, p, problem_id) for p in paths]


def preference_pairs(
    tree: Tree, k: int = 2, problem_id: str | None = None, supported_only: bool = False
) -> list[PreferencePair]:
    """Step-level pairs sharing a prefix: at each expanded node, the top-`k` children by Q that
    lead to a correct answer × the bottom-`k` by Q that lead only to wrong ones."""
    has_correct, has_wrong = _outcomes(tree, supported_only)
    pairs: list[PreferencePair] = []
    for node in tree.nodes:
        kids = [c for c in tree.children(node) if _valid(c)]
        pos = sorted((c for c in kids if has_correct[c.id]), key=lambda c: (-c.q, c.id))[:k]
        neg = sorted(
            (c for c in kids if has_wrong[c.id] and not has_correct[c.id]),
            key=lambda c: (c.q, c.id),
        )[:k]
        if not pos or not neg:
            continue
        prefix = [n.text for n in tree.path(node)]
        for p, n in product(pos, neg):
            pairs.append(
                PreferencePair(
                    problem=tree.problem,
                    prefix=prefix,
                    chosen=p.text,
                    rejected=n.text,
                    chosen_q=p.q,
                    rejected_q=n.q,
                    kind="step",
                    problem_id=problem_id,
                )
            )
    return pairs


def final_answer_pairs(
    tree: Tree, k: int = 2, problem_id: str | None = None, supported_only: bool = False
) -> list[PreferencePair]:
    """Whole-trajectory pairs for the last step: the top-`k` correct trajectories by mean Q ×
    the bottom-`k` wrong ones; the prefix is the steps they share, each side the rest, joined."""
    good = _ranked_paths(tree, True, supported_only)[:k]
    bad = _ranked_paths(tree, False)[::-1][:k]  # lowest mean Q first
    pairs = []
    for g, b in product(good, bad):
        shared = 0
        while shared < min(len(g), len(b)) - 1 and g[shared].id == b[shared].id:
            shared += 1
        pairs.append(
            PreferencePair(
                problem=tree.problem,
                prefix=[n.text for n in g[:shared]],
                chosen="".join(n.text for n in g[shared:]),
                rejected="".join(n.text for n in b[shared:]),
                chosen_q=_mean_q(g),
                rejected_q=_mean_q(b),
                kind="final",
                problem_id=problem_id,
            )
        )
    return pairs


def _pair_key(p: PreferencePair) -> tuple[str, ...]:
    return (*p.prefix, "\x00", p.chosen, "\x00", p.rejected)


def extract(
    tree: Tree,
    k: int = 2,
    final_pairs: bool = True,
    problem_id: str | None = None,
    supported_only: bool = False,
) -> Extraction:
    """Everything one tree gives: SFT trajectories, step pairs (+ final-answer pairs unless
    `final_pairs=False`; one that repeats a step pair is dropped), and their counts."""
    trajectories = sft_trajectories(tree, k, problem_id, supported_only)
    pairs = preference_pairs(tree, k, problem_id, supported_only)
    n_step = len(pairs)
    if final_pairs:
        seen = {_pair_key(p) for p in pairs}
        for p in final_answer_pairs(tree, k, problem_id, supported_only):
            if _pair_key(p) not in seen:
                seen.add(_pair_key(p))
                pairs.append(p)
    hist = Counter(len(t.steps) for t in trajectories)
    stats = ExtractStats(
        problems=1,
        problems_solved=int(bool(trajectories)),
        problems_with_pairs=int(bool(pairs)),
        trajectories=len(trajectories),
        step_pairs=n_step,
        final_pairs=len(pairs) - n_step,
        unsupported=sum(t.correct is True and not supported(t) for t in tree.terminals()),
        steps_per_trajectory=dict(sorted(hist.items())),
    )
    return Extraction(trajectories=trajectories, pairs=pairs, stats=stats)


def merge_stats(stats: Iterable[ExtractStats]) -> ExtractStats:
    total = ExtractStats()
    for s in stats:
        total = total.merge(s)
    return total


# --- rendering for training ----------------------------------------------------------------------


def render_sft(trajectory: Trajectory, style: PromptStyle = "bare") -> SftExample:
    """The policy's training text for a trajectory: the prompt it is given (no loss), then the
    steps it writes (loss), except each `<output>` block, which the executor writes (no loss).
    Stop strings (`<end_of_step>`, `<end_of_code>`, `<end_of_answer>`) are trained on, so the
    model learns to end its steps."""
    prompt = render_prompt(trajectory.problem, [], style)
    completion = ""
    no_loss: list[tuple[int, int]] = []
    for text in trajectory.step_texts():
        start = text.find(OUTPUT)
        if start != -1:
            end = text.find(ANSWER, start)
            end = len(text) if end == -1 else end + len(ANSWER)
            no_loss.append((len(completion) + start, len(completion) + end))
        completion += text
    return SftExample(
        prompt=prompt, completion=completion, no_loss=no_loss, problem_id=trajectory.problem_id
    )
