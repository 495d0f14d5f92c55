"""The step formats a policy writes, and the one interface the expansion asks about them.

`code` is rStar-Math's code-augmented format (search.steps): every step is Python, verified by
running the program of its whole path, and a final step's output is shown to the model, which
then writes the boxed answer in a second call. `text` is plain chain of thought
(search.text_steps): steps split at a blank line in the model's own chat template, the answer
boxed in the final step, and a fenced Python block run on its own where a step has one.
Everything else (the algorithms, the budget, the cache, the judge, the tree) is the same for
both, so they compare at equal tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, get_args

from search.protocols import ChatTemplate, Generation
from search.steps import (
    STEP_STOPS,
    ParsedStep,
    PromptStyle,
    chatml_prompt,
    parse_step,
    path_code,
    render_prompt,
    render_step,
)
from search.text_steps import (
    DELIMITER,
    FENCE,
    SYSTEM_PROMPT,
    parse_text_step,
    render_text_step,
    text_stops,
)

StepFormatName = Literal["code", "text"]
STEP_FORMATS: tuple[str, ...] = get_args(StepFormatName)
# the prompt styles that mean something in the text format: the system prompt, or none
TEXT_PROMPT_STYLES: tuple[str, ...] = ("system", "bare")


def format_prompt_style(step_format: str, style: PromptStyle) -> PromptStyle:
    """The prompt style a format reads: the code format any; the text format frames the
    problem in the model's chat template with the system prompt (`system`, and the code
    format's `few_shot` and `chat`, whose worked examples are code) or without it (`bare`, as
    DeepSeek-R1's distillations are asked)."""
    if step_format == "text" and style not in TEXT_PROMPT_STYLES:
        return "system"
    return style


class StepFormat(Protocol):
    """What the expansion needs to know of a format."""

    name: StepFormatName
    stops: tuple[str, ...]  # where a step's generation stops
    answer_call: bool  # a final step's answer is asked for in a second call (else it is in it)

    async def opening(self, problem: str, policy: object) -> str:
        """The prompt before the first step (once per search)."""
        ...

    def prompt(self, opening: str, steps: Sequence[str]) -> str:
        """The prompt that asks for the step after `steps` (rendered step texts)."""
        ...

    def parse(self, generation: Generation) -> ParsedStep:
        """One generated step; malformed output is a failed step, never an exception."""
        ...

    def program(self, path_codes: Sequence[str], step: ParsedStep) -> str:
        """The program that verifies `step` ("" when nothing runs)."""
        ...

    def render(self, step: ParsedStep, output: str | None = None) -> str:
        """The step's text as it re-enters the prompt (`output`: what its program printed)."""
        ...


class CodeFormat:
    """rStar-Math's code-augmented steps (search.steps)."""

    name: StepFormatName = "code"
    stops = STEP_STOPS
    answer_call = True

    def __init__(self, prompt_style: PromptStyle = "few_shot") -> None:
        self.prompt_style = prompt_style

    async def opening(self, problem: str, policy: object) -> str:
        return render_prompt(problem, [], self.prompt_style)

    def prompt(self, opening: str, steps: Sequence[str]) -> str:
        return opening + "".join(steps)

    def parse(self, generation: Generation) -> ParsedStep:
        return parse_step(generation.text, generation.stop)

    def program(self, path_codes: Sequence[str], step: ParsedStep) -> str:
        return path_code([*path_codes, step.code])  # the whole path: one growing program

    def render(self, step: ParsedStep, output: str | None = None) -> str:
        return render_step(step.body, step.final)  # the output is shown with the answer call


class TextFormat:
    """Plain steps split at `delimiter` (search.text_steps)."""

    name: StepFormatName = "text"
    answer_call = False

    def __init__(self, delimiter: str = DELIMITER, prompt_style: PromptStyle = "system") -> None:
        self.delimiter = delimiter
        self.prompt_style = format_prompt_style("text", prompt_style)
        self.stops = text_stops(delimiter)

    def messages(self, problem: str) -> list[dict[str, str]]:
        user = {"role": "user", "content": problem.strip()}
        if self.prompt_style == "bare":
            return [user]
        return [{"role": "system", "content": SYSTEM_PROMPT}, user]

    async def opening(self, problem: str, policy: object) -> str:
        messages = self.messages(problem)
        rendered = None
        if isinstance(policy, ChatTemplate):
            rendered = await policy.chat_prompt(messages)
        return rendered if rendered is not None else chatml_prompt(messages)

    def prompt(self, opening: str, steps: Sequence[str]) -> str:
        return opening + "".join(steps)

    def parse(self, generation: Generation) -> ParsedStep:
        g = generation
        return parse_text_step(g.text, g.stop, g.truncated, self.delimiter)

    def continuation_stop(self) -> tuple[str, ...]:
        """Where a step that stopped inside its code block goes on to: the closing fence."""
        return (FENCE,)

    def program(self, path_codes: Sequence[str], step: ParsedStep) -> str:
        return step.code + "\n" if step.code.strip() else ""  # each block is a whole program

    def render(self, step: ParsedStep, output: str | None = None) -> str:
        return render_text_step(step.body, output if step.code else None, self.delimiter)


def step_format(config: object) -> CodeFormat | TextFormat:
    """The format a search config names (`step_format`, `step_delimiter`, `prompt_style`)."""
    name = getattr(config, "step_format", "code")
    style = getattr(config, "prompt_style", "few_shot")
    if name == "text":
        return TextFormat(getattr(config, "step_delimiter", DELIMITER), style)
    if name != "code":
        raise ValueError(f"unknown step format {name!r}; choose one of {', '.join(STEP_FORMATS)}")
    return CodeFormat(style)
