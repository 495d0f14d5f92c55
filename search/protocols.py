"""The three seams between the search and the outside world.

The search only ever talks to these protocols, so it runs the same against vLLM, transformers,
a remote server, or a scripted test double. All calls are batch-first: one call carries every
prompt of a search wave, so backends can batch and prefix-cache.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One prompt to continue, `n` times."""

    prompt: str
    n: int = 1
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Generation:
    """One sampled continuation.

    `text` excludes the stop string; `stop` is the stop string that ended it, or None when
    the generation ended on length or end-of-sequence (backends normalise to this shape).
    """

    text: str
    stop: str | None
    tokens: int
    prompt_tokens: int = 0  # tokens of the request's prompt (the same for its `n` generations)
    truncated: bool = False  # it ended on the request's max_tokens (not on end-of-sequence)


@runtime_checkable
class Policy(Protocol):
    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Generation]]:
        """Return, for each request, its `n` generations, in order."""
        ...


@runtime_checkable
class ChatTemplate(Protocol):
    """A policy that knows its model's chat template (the text step format frames the problem
    with it). A policy without one gets ChatML."""

    async def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str | None:
        """`messages` in the model's chat template with the assistant's turn opened, as the
        engine will read it (no BOS that the engine's tokenizer adds itself); None when the
        model has no chat template."""
        ...


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """Score the last of `steps` (rendered step texts, first to last) for `problem`; the steps
    are in `step_format` (search.formats), which tells a reward model how to read them."""

    problem: str
    steps: tuple[str, ...]
    step_format: str = "code"


@runtime_checkable
class RewardModel(Protocol):
    async def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        """Return one score in [-1, 1] per request (higher = more likely on a correct path)."""
        ...


@dataclass(frozen=True, slots=True)
class ExecLimits:
    timeout_s: float = 10.0
    memory_mb: int = 1024
    output_bytes: int = 64 * 1024


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What running one path's code produced. `ok` is False for any failure."""

    ok: bool
    stdout: str = ""
    error: str | None = None
    timed_out: bool = False
    killed: str | None = None  # "memory" | "output" | "signal" when the runner killed it
    elapsed_s: float = 0.0


@runtime_checkable
class Sandbox(Protocol):
    async def run(self, code: str, limits: ExecLimits | None = None) -> ExecResult:
        """Run `code` as a fresh Python program; never raise for a failure of the code itself."""
        ...


@runtime_checkable
class ExpansionCache(Protocol):
    """Expansions already computed (candidate steps with their execution results and scores),
    by key. A cache that cannot answer returns misses; it never fails a search."""

    async def get_many(self, keys: Sequence[str]) -> list[list[dict] | None]:
        """One entry (a list of child records) or None per key, in order."""
        ...

    async def put_many(self, items: Sequence[tuple[str, list[dict]]]) -> None: ...
