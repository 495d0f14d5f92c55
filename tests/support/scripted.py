"""Test doubles for the search's protocols (tests only): a scripted policy and reward model,
and the scripts the tests give the policy."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence

from search.protocols import Generation, GenerationRequest, ScoreRequest
from search.steps import ANSWER, CODE, CODE_END, OUTPUT, OUTPUT_END, STEP_END

_STOPS = ("<end_of_step>", "<end_of_code>", "<end_of_answer>", "<|user|>")


def path_of(prompt: str) -> tuple[str, ...]:
    """Step bodies already in a prompt (after the problem's `<code>`)."""
    tail = prompt.rsplit(CODE + "\n", 1)[-1]
    parts = re.split(rf"\n(?:{STEP_END}|{CODE_END})\n", tail)
    return tuple(p.strip() for p in parts[:-1])


def split_stop(raw: str) -> Generation:
    for s in _STOPS:
        if raw.endswith(s):
            return Generation(raw[: -len(s)], s, max(1, len(raw) // 4))
    return Generation(raw, None, max(1, len(raw) // 4))


def echo_answer(prompt: str) -> str:
    """Answer step that boxes the last line the code printed."""
    out = prompt.rsplit(OUTPUT, 1)[-1].split(OUTPUT_END)[0].strip().splitlines()
    return f"The answer is \\boxed{{{out[-1] if out else ''}}}.<end_of_answer>"


class ScriptedPolicy:
    """Returns scripted steps by path: `script[path_of_bodies] = [raw candidate, ...]`.

    Candidates are handed out round-robin per path, so asking for more samples than scripted
    repeats them (which is how de-duplication gets exercised). Paths not in the script get
    `default(path)` if given, else a malformed step.
    """

    def __init__(
        self,
        script: dict[tuple[str, ...], list[str]] | None = None,
        default: Callable[[tuple[str, ...]], list[str]] | None = None,
        answer: Callable[[str], str] = echo_answer,
        delay_s: float = 0.0,
    ) -> None:
        self.script = script or {}
        self.default = default
        self.answer = answer
        self.delay_s = delay_s
        self.calls: list[list[GenerationRequest]] = []
        self.call_tokens: list[int] = []
        self.cancelled = 0  # calls cancelled while they were in flight (during the delay)
        self._next: dict[tuple[str, ...], int] = {}

    @property
    def step_batches(self) -> list[int]:
        """Number of prompts in each step-generation call (answer calls excluded)."""
        return [len(c) for c in self.calls if not c[0].prompt.endswith(ANSWER)]

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Generation]]:
        self.calls.append(list(requests))
        if self.delay_s:
            try:
                await asyncio.sleep(self.delay_s)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        out = []
        for req in requests:
            if req.prompt.endswith(ANSWER):
                out.append([split_stop(self.answer(req.prompt)) for _ in range(req.n)])
                continue
            path = path_of(req.prompt)
            cands = self.script.get(path)
            if cands is None:
                cands = self.default(path) if self.default else ["oops, no step here"]
            gens = []
            for _ in range(req.n):
                i = self._next.get(path, 0)
                self._next[path] = i + 1
                gens.append(split_stop(cands[i % len(cands)]))
            out.append(gens)
        self.call_tokens.append(sum(g.tokens for gens in out for g in gens))
        return out


class ScriptedReward:
    """Scores a step by the first rule whose substring occurs in it (default 0)."""

    def __init__(self, rules: dict[str, float] | None = None, default: float = 0.0) -> None:
        self.rules = rules or {}
        self.default = default
        self.calls: list[int] = []

    async def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        self.calls.append(len(requests))
        out = []
        for r in requests:
            last = r.steps[-1]
            out.append(next((v for k, v in self.rules.items() if k in last), self.default))
        return out


# --- scripts: what a scripted policy says at each path (its `default`) ---------------------------


def endless(path: tuple[str, ...]) -> list[str]:
    """A policy that never finishes: each path gets 3 distinct new steps."""
    k = len(path) + 1
    return [f"# Step {k}: option {i}\nv{k}_{i} = {i}\n<end_of_step>" for i in range(3)]


def finishing(path: tuple[str, ...]) -> list[str]:
    """Two candidates per path; the third step of a path finishes by printing a number."""
    k = len(path) + 1
    if k >= 3:
        return [f"# Step {k}: answer {i}\nprint({30 + i})\n<end_of_code>" for i in range(2)]
    return [f"# Step {k}: option {i}\nv{k}_{i} = {i}\n<end_of_step>" for i in range(2)]


def thirty(path: tuple[str, ...]) -> list[str]:
    """One candidate per path: set x, then print x*5 (which the answer step boxes)."""
    if not path:
        return ["# Step 1: set x\nx = 6\n<end_of_step>"]
    return [f"# Step {len(path) + 1}: multiply\nprint(x * 5)\n<end_of_code>"]
