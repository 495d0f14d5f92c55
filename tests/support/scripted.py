"""Test doubles for the search's protocols (tests only): scripted policies (the code step
format's and the text format's) and reward model, and the scripts the tests give the policies."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence

from search.protocols import Generation, GenerationRequest, ScoreRequest
from search.steps import ANSWER, CODE, CODE_END, OUTPUT, OUTPUT_END, STEP_END, cut_at_stop

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
        self.requests: list[ScoreRequest] = []

    async def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        self.calls.append(len(requests))
        self.requests += requests
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


def six_or_seven(path: tuple[str, ...]) -> list[str]:
    """First steps alternate between two values; the second prints it: a vote split evenly."""
    if not path:
        return ["# Step 1: six\nx = 6\n<end_of_step>", "# Step 1: seven\nx = 7\n<end_of_step>"]
    return ["# Step 2: answer\nprint(x)\n<end_of_code>"]


# --- the text step format -------------------------------------------------------------------

ASSISTANT_TURN = "<|assistant|>\n"
EOS, LENGTH = "<eos>", "<length>"  # a scripted generation's end, where no stop string ends it


def chat_template(messages: Sequence[dict[str, str]]) -> str:
    """The scripted model's own chat template (not ChatML), with the assistant's turn opened."""
    turns = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages)
    return turns + ASSISTANT_TURN


def text_path_of(prompt: str, delimiter: str = "\n\n") -> tuple[str, ...]:
    """What the assistant wrote before this request, split at the delimiter (a step's output
    block stays with its step unless the output holds a blank line)."""
    tail = prompt.split(ASSISTANT_TURN, 1)[-1] if ASSISTANT_TURN in prompt else ""
    return tuple(tail.split(delimiter)[:-1])


class TextScriptedPolicy:
    """The text format's double: `script[path] = [raw candidate, ...]`, where the path is what
    the assistant wrote so far split at the delimiter (text_path_of) and a raw candidate ends
    where the request's stop strings first occur in it, as an engine's generation does; one with
    none ends at the end of sequence, or at the token limit when it ends in <length>. Handed
    out round-robin per path, like ScriptedPolicy; `chat=False`: a policy with no template of
    its own (the search falls back to ChatML)."""

    def __init__(
        self,
        script: dict[tuple[str, ...], list[str]] | None = None,
        default: Callable[[tuple[str, ...]], list[str]] | None = None,
        delimiter: str = "\n\n",
        chat: bool = True,
    ) -> None:
        self.script = script or {}
        self.default = default
        self.delimiter = delimiter
        self.calls: list[list[GenerationRequest]] = []
        self.chats: list[list[dict[str, str]]] = []
        self._next: dict[tuple[str, ...], int] = {}
        if chat:
            self.chat_prompt = self._chat_prompt

    async def _chat_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        self.chats.append([dict(m) for m in messages])
        return chat_template(messages)

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Generation]]:
        self.calls.append(list(requests))
        out = []
        for req in requests:
            path = text_path_of(req.prompt, self.delimiter)
            cands = self.script.get(path)
            if cands is None:
                cands = self.default(path) if self.default else ["nothing scripted" + LENGTH]
            gens = []
            for _ in range(req.n):
                i = self._next.get(path, 0)
                self._next[path] = i + 1
                gens.append(self._one(cands[i % len(cands)], req))
            out.append(gens)
        return out

    @staticmethod
    def _one(raw: str, req: GenerationRequest) -> Generation:
        text, stop = cut_at_stop(raw, req.stop)
        truncated = False
        if stop is None:
            truncated = text.endswith(LENGTH)
            text = text.removesuffix(LENGTH).removesuffix(EOS)
        return Generation(text, stop, max(1, len(text) // 4), truncated=truncated)


def text_five(path: tuple[str, ...]) -> list[str]:
    """Two steps to 2 + 3: the sum, then the boxed answer at the end of sequence."""
    if not path:
        return ["We add 2 and 3: 2 + 3 = 5.\n\n"]
    return ["So the answer is $\\boxed{5}$." + EOS]


class EitherFormat:
    """Code steps to a code prompt (`thirty`: they answer 30) and text steps to a text one
    (`text_five`: they answer 5), told apart by the requests' stop strings, so that one server
    or solver takes both formats; `formats` lists which each call was."""

    def __init__(self) -> None:
        self.code = ScriptedPolicy(default=thirty)
        self.text = TextScriptedPolicy(default=text_five)
        self.chat_prompt = self.text.chat_prompt
        self.formats: list[str] = []

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Generation]]:
        stop = requests[0].stop
        is_text = "\n\n" in stop or stop == ("```",)
        self.formats.append("text" if is_text else "code")
        return await (self.text if is_text else self.code).generate(requests)
