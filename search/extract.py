"""Training data from finished search trees (rStar-Math's self-evolution). Pure logic.

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

- **Labels as the reference draws them** (`LabelRules`): a step's Q for labelling is the mean
  outcome of every terminal below it (+1 credited correct, -1 wrong), whether or not the search
  visited it; a pair is kept only when the chosen Q exceeds the rejected one by `q_margin` and the
  two steps differ by at least `min_edit_chars` characters; with `check_claims`, a correct
  terminal whose path states false arithmetic, or whose last comment ends on another number than
  its answer, is not credited (search/claims.py), so it is neither SFT data nor a positive.

Records are pydantic models (`.model_dump_json()` for a JSONL line, `model_validate_json` back).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from itertools import product
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from rapidfuzz.distance import Levenshtein

from search.claims import contradicts_answer, false_claims
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
    kind: Literal["step", "final", "terminal"] = "step"
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
    unsound: int = 0  # correct terminals whose comments state false arithmetic
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
            unsound=self.unsound + other.unsound,
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
            "unsound": self.unsound,
            "mean_steps_per_trajectory": round(self.mean_steps_per_trajectory, 3),
        }


class Extraction(BaseModel):
    trajectories: list[Trajectory]
    pairs: list[PreferencePair]
    stats: ExtractStats


class LabelRules(BaseModel):
    """How a finished tree becomes training data. The defaults are the reference's rules; the
    rounds recorded before them ran with `q="search"`, `q_margin=None`, `min_edit_chars=0`,
    `check_claims=False`."""

    model_config = ConfigDict(frozen=True)

    top_k: int = Field(2, ge=1, description="SFT trajectories per problem; pairs: k×k per step")
    final_pairs: bool = Field(True, description="also final-answer pairs (paper's relaxation)")
    supported_only: bool = Field(
        True, description="credit a correct answer only if its code printed it (SFT and pairs)"
    )
    q: Literal["outcomes", "search"] = Field(
        "outcomes",
        description="a step's Q for labels: the mean outcome of every terminal below it, or "
        "the search's own Q (only the terminals its rollouts visited, PRM first values mixed in)",
    )
    q_margin: float | None = Field(
        0.5, ge=0, description="keep a pair only if chosen Q − rejected Q ≥ this (unset: any)"
    )
    min_edit_chars: int = Field(
        20, ge=0, description="keep a pair only if its two sides differ by this many characters"
    )
    check_claims: bool = Field(
        True, description="credit no correct answer whose comments state false arithmetic"
    )


# --- helpers -----------------------------------------------------------------------------------


def _valid(node: Node) -> bool:
    return node.status != "invalid" and node.error is None


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def supported(node: Node) -> bool:
    """Did the terminal's code print its answer: a printed line, or a number in one ("The total
    is 7"), graded equal to it?"""
    if node.answer is None:
        return False
    printed = [ln.strip() for ln in (node.output or "").splitlines() if ln.strip()]
    printed += [m for ln in printed for m in _NUMBER.findall(ln) if m != ln]
    return any(x == node.answer or answers_equal(x, node.answer) for x in printed)


def _sound(tree: Tree, check: bool) -> list[bool]:
    """Per node: is every comment on its path free of false arithmetic (a terminal's last
    comment also ending on its answer, if it ends on a number)? All True unless `check`."""
    ok = [True] * len(tree)
    if not check:
        return ok
    for node in tree.nodes:  # parents come before their children
        own = not false_claims(node.reasoning)
        if node.status == "terminal":
            own = own and not contradicts_answer(node.reasoning, node.answer)
        ok[node.id] = own and (node.parent is None or ok[node.parent])
    return ok


class _Labels:
    """What labelling needs of one tree: which terminals count as correct, and each node's Q."""

    def __init__(self, tree: Tree, rules: LabelRules) -> None:
        self.tree, self.rules = tree, rules
        self.sound = _sound(tree, rules.check_claims)
        self.has_correct, self.has_wrong = _outcomes(tree, self.credited)
        self._q = _outcome_q(tree, self.credited) if rules.q == "outcomes" else None

    def credited(self, node: Node) -> bool:
        if node.correct is not True or not self.sound[node.id]:
            return False
        return not self.rules.supported_only or supported(node)

    def q(self, node: Node) -> float:
        if self._q is None:
            return node.q
        v = self._q[node.id]
        return v if v is not None else 0.0

    def mean_q(self, path: Sequence[Node]) -> float:
        return sum(self.q(n) for n in path) / len(path) if path else 0.0

    def keep(self, chosen: str, rejected: str, chosen_q: float, rejected_q: float) -> bool:
        r = self.rules
        if r.q_margin is not None and chosen_q - rejected_q < r.q_margin:
            return False
        return r.min_edit_chars <= 0 or Levenshtein.distance(chosen, rejected) >= r.min_edit_chars

    def ranked_paths(self, correct: bool) -> list[list[Node]]:
        """Paths to credited correct (or to wrong) terminals with no failed step, best mean Q
        first (ties: the terminal found first)."""
        paths = []
        for t in self.tree.terminals():
            if self.credited(t) if correct else t.correct is False:
                path = self.tree.path(t)
                if path and all(_valid(n) for n in path):
                    paths.append(path)
        paths.sort(key=lambda p: (-self.mean_q(p), p[-1].id))
        return paths


def _outcomes(tree: Tree, credited: Callable[[Node], bool]) -> tuple[list[bool], list[bool]]:
    """Per node: does its subtree hold a credited correct terminal / a wrong one (valid nodes
    only; a correct terminal not credited is neither)."""
    has_correct = [False] * len(tree)
    has_wrong = [False] * len(tree)
    # children are always added after their parent, so ids descend bottom-up
    for node in reversed(tree.nodes):
        if not _valid(node):
            continue
        if node.status == "terminal":
            has_correct[node.id] |= credited(node)
            has_wrong[node.id] |= node.correct is False
        if node.parent is not None:
            has_correct[node.parent] |= has_correct[node.id]
            has_wrong[node.parent] |= has_wrong[node.id]
    return has_correct, has_wrong


def _outcome_q(tree: Tree, credited: Callable[[Node], bool]) -> list[float | None]:
    """Per node: the mean outcome (+1 credited, -1 wrong) of the valid terminals below it,
    None where there is none."""
    total = [0.0] * len(tree)
    count = [0] * len(tree)
    for node in reversed(tree.nodes):
        if not _valid(node):
            continue
        if node.status == "terminal" and (node.correct is False or credited(node)):
            total[node.id] += 1.0 if node.correct else -1.0
            count[node.id] += 1
        if node.parent is not None:
            total[node.parent] += total[node.id]
            count[node.parent] += count[node.id]
    return [t / c if c else None for t, c in zip(total, count, strict=True)]


def _trajectory(labels: _Labels, path: list[Node], problem_id: str | None) -> Trajectory:
    last = path[-1]
    return Trajectory(
        problem=labels.tree.problem,
        steps=[
            TrajectoryStep(
                text=n.text,
                reasoning=n.reasoning,
                code=n.code,
                output=n.output,
                q=labels.q(n),
                visits=n.visits,
            )
            for n in path
        ],
        answer=last.answer,
        answer_text=last.answer_text,
        correct=last.correct,
        mean_q=labels.mean_q(path),
        problem_id=problem_id,
    )


# --- extraction --------------------------------------------------------------------------------


def sft_trajectories(
    tree: Tree, rules: LabelRules | None = None, problem_id: str | None = None
) -> list[Trajectory]:
    """The top-k credited correct trajectories by mean Q of their steps (none with a failed
    step)."""
    labels = _Labels(tree, rules or LabelRules())
    paths = labels.ranked_paths(True)[: labels.rules.top_k]
    return [_trajectory(labels, p, problem_id) for p in paths]


def preference_pairs(
    tree: Tree, rules: LabelRules | None = None, problem_id: str | None = None
) -> list[PreferencePair]:
    """Step-level pairs sharing a prefix: at each expanded node, the top-k children by Q that
    lead to a credited correct answer × the bottom-k by Q that lead only to wrong ones, each
    pair kept if it passes the margin and edit-distance rules."""
    labels = _Labels(tree, rules or LabelRules())
    k = labels.rules.top_k
    q = labels.q
    pairs: list[PreferencePair] = []
    for node in tree.nodes:
        kids = [c for c in tree.children(node) if _valid(c)]
        pos = sorted((c for c in kids if labels.has_correct[c.id]), key=lambda c: (-q(c), c.id))
        neg = sorted(
            (c for c in kids if labels.has_wrong[c.id] and not labels.has_correct[c.id]),
            key=lambda c: (q(c), c.id),
        )
        if not pos or not neg:
            continue
        prefix = [n.text for n in tree.path(node)]
        for p, n in product(pos[:k], neg[:k]):
            if not labels.keep(p.text, n.text, q(p), q(n)):
                continue
            pairs.append(
                PreferencePair(
                    problem=tree.problem,
                    prefix=prefix,
                    chosen=p.text,
                    rejected=n.text,
                    chosen_q=q(p),
                    rejected_q=q(n),
                    kind="step",
                    problem_id=problem_id,
                )
            )
    return pairs


def final_answer_pairs(
    tree: Tree, rules: LabelRules | None = None, problem_id: str | None = None
) -> list[PreferencePair]:
    """Whole-trajectory pairs for the last step: the top-k credited correct trajectories by mean
    Q × the bottom-k wrong ones; the prefix is the steps they share, each side the rest, joined;
    kept if they pass the margin and edit-distance rules."""
    labels = _Labels(tree, rules or LabelRules())
    k = labels.rules.top_k
    good = labels.ranked_paths(True)[:k]
    bad = labels.ranked_paths(False)[::-1][:k]  # lowest mean Q first
    pairs = []
    for g, b in product(good, bad):
        shared = 0
        while shared < min(len(g), len(b)) - 1 and g[shared].id == b[shared].id:
            shared += 1
        chosen = "".join(n.text for n in g[shared:])
        rejected = "".join(n.text for n in b[shared:])
        gq, bq = labels.mean_q(g), labels.mean_q(b)
        if not labels.keep(chosen, rejected, gq, bq):
            continue
        pairs.append(
            PreferencePair(
                problem=tree.problem,
                prefix=[n.text for n in g[:shared]],
                chosen=chosen,
                rejected=rejected,
                chosen_q=gq,
                rejected_q=bq,
                kind="final",
                problem_id=problem_id,
            )
        )
    return pairs


def _pair_key(p: PreferencePair) -> tuple[str, ...]:
    return (*p.prefix, "\x00", p.chosen, "\x00", p.rejected)


def extract(
    tree: Tree, rules: LabelRules | None = None, problem_id: str | None = None
) -> Extraction:
    """Everything one tree gives: SFT trajectories, step pairs (+ final-answer pairs unless
    `rules.final_pairs` is off; one that repeats a step pair is dropped), and their counts."""
    rules = rules or LabelRules()
    trajectories = sft_trajectories(tree, rules, problem_id)
    pairs = preference_pairs(tree, rules, problem_id)
    n_step = len(pairs)
    if rules.final_pairs:
        seen = {_pair_key(p) for p in pairs}
        for p in final_answer_pairs(tree, rules, problem_id):
            if _pair_key(p) not in seen:
                seen.add(_pair_key(p))
                pairs.append(p)
    hist = Counter(len(t.steps) for t in trajectories)
    sound = _sound(tree, rules.check_claims)
    stats = ExtractStats(
        problems=1,
        problems_solved=int(bool(trajectories)),
        problems_with_pairs=int(bool(pairs)),
        trajectories=len(trajectories),
        step_pairs=n_step,
        final_pairs=len(pairs) - n_step,
        unsupported=sum(t.correct is True and not supported(t) for t in tree.terminals()),
        unsound=sum(t.correct is True and not sound[t.id] for t in tree.terminals()),
        steps_per_trajectory=dict(sorted(hist.items())),
    )
    return Extraction(trajectories=trajectories, pairs=pairs, stats=stats)


def dev_pairs(
    tree: Tree, problem_id: str | None = None, per_kind: int = 8, seed: int = 0
) -> list[PreferencePair]:
    """Pairs that test a PPM on a tree whose labels are beyond doubt, at most `per_kind` of each
    kind per problem (drawn with `seed`, so big trees do not outvote small ones):
    `terminal`, a credited correct trajectory against a wrong one (the prefix they share, each
    side the rest); `step`, sibling steps whose terminals below are all right against all
    wrong."""
    labels = _Labels(tree, LabelRules())
    rng = random.Random(f"{seed}:{problem_id or tree.problem}")

    def sample(items: list) -> list:
        return items if len(items) <= per_kind else rng.sample(items, per_kind)

    def all_right(n: Node) -> bool:
        return labels.has_correct[n.id] and not labels.has_wrong[n.id]

    def all_wrong(n: Node) -> bool:
        return labels.has_wrong[n.id] and not labels.has_correct[n.id]

    steps = []
    for node in tree.nodes:
        kids = [c for c in tree.children(node) if _valid(c)]
        prefix = [n.text for n in tree.path(node)]
        for p, n in product([c for c in kids if all_right(c)], [c for c in kids if all_wrong(c)]):
            steps.append((prefix, p.text, n.text, labels.q(p), labels.q(n), "step"))
    terminals = []
    for g, b in product(labels.ranked_paths(True), labels.ranked_paths(False)):
        shared = 0
        while shared < min(len(g), len(b)) - 1 and g[shared].id == b[shared].id:
            shared += 1
        terminals.append(
            (
                [n.text for n in g[:shared]],
                "".join(n.text for n in g[shared:]),
                "".join(n.text for n in b[shared:]),
                1.0,
                -1.0,
                "terminal",
            )
        )
    return [
        PreferencePair(
            problem=tree.problem,
            prefix=prefix,
            chosen=c,
            rejected=r,
            chosen_q=cq,
            rejected_q=rq,
            kind=kind,
            problem_id=problem_id,
        )
        for prefix, c, r, cq, rq, kind in sample(steps) + sample(terminals)
    ]


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
