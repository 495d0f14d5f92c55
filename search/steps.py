"""rStar-Math's code-augmented step format: prompts, stop strings, step parsing, answers.

A solution is one growing `<code>` block. Each step is a `# Step k: ...` comment plus Python and
ends in `<end_of_step>`; the last code step prints the answer and ends in `<end_of_code>`; the
executor's stdout follows in `<output>...<end_of_output>`; then
`<answer>...\\boxed{..}<end_of_answer>`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

CODE = "<code>"
STEP_END = "<end_of_step>"
CODE_END = "<end_of_code>"
OUTPUT = "<output>"
OUTPUT_END = "<end_of_output>"
ANSWER = "<answer>"
ANSWER_END = "<end_of_answer>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
FORMAT_TAGS = (CODE, STEP_END, CODE_END, OUTPUT, OUTPUT_END, ANSWER, ANSWER_END, USER, ASSISTANT)

# A step generation stops at the end of a step or of the code. A model that jumps straight to
# `<output>` (or `<end_of_output>`) has ended its code too, and is read that way; the last two
# only catch a model that skips ahead (those steps are malformed).
# In order of importance: OpenAI-compatible servers accept at most four stop strings.
STEP_STOPS: tuple[str, ...] = (STEP_END, CODE_END, OUTPUT, USER, ANSWER_END, OUTPUT_END)
CODE_ENDS: tuple[str, ...] = (CODE_END, OUTPUT, OUTPUT_END)
ANSWER_STOPS: tuple[str, ...] = (ANSWER_END, USER)

PromptStyle = Literal["few_shot", "chat", "system", "bare"]
PROMPT_STYLES: tuple[str, ...] = get_args(PromptStyle)

_ASSISTANT_OPENING = "Let's think step by step and solve the problem with code."

# Worked examples for models never trained on the format (written for this project, not
# taken from any benchmark): (problem, the assistant's solution after the opening line).
_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "Tom buys 3 boxes of 12 pencils and gives away 7 pencils. How many pencils does he have "
        "left?",
        r"""<code>
# Step 1: Count the pencils Tom buys.
bought = 3 * 12
<end_of_step>
# Step 2: Subtract the pencils he gives away.
left = bought - 7
<end_of_step>
# Step 3: Now print the final answer.
print(left)
<end_of_code>
<output>
29
<end_of_output>
<answer>Tom has \boxed{29} pencils left.<end_of_answer>""",
    ),
    (
        "What is the sum of all values of $x$ such that $x^2 - 5x + 6 = 0$?",
        r"""<code>
# Step 1: Solve the quadratic equation with sympy.
import sympy as sp
x = sp.symbols('x')
roots = sp.solve(x**2 - 5*x + 6, x)
<end_of_step>
# Step 2: Now print the final answer: the sum of the roots.
print(sum(roots))
<end_of_code>
<output>
5
<end_of_output>
<answer>The sum of the roots is \boxed{5}.<end_of_answer>""",
    ),
    (
        "A bakery sells muffins for $3 each and cookies for $1.50 each. On Monday it sold 24 "
        "muffins and twice as many cookies as muffins. How much money did it make on Monday?",
        r"""<code>
# Step 1: The bakery sold twice as many cookies as muffins.
muffins = 24
cookies = 2 * muffins
<end_of_step>
# Step 2: Money from muffins and from cookies.
muffin_money = muffins * 3
cookie_money = cookies * 1.50
<end_of_step>
# Step 3: Now print the final answer: the total money.
print(muffin_money + cookie_money)
<end_of_code>
<output>
144.0
<end_of_output>
<answer>The bakery made \boxed{144} dollars on Monday.<end_of_answer>""",
    ),
    (
        "Maria reads 15 pages on each weekday and 30 pages on each day of the weekend. How many "
        "weeks does she need to finish a 600-page book?",
        r"""<code>
# Step 1: Pages Maria reads in one week: 5 weekdays and 2 weekend days.
pages_per_week = 15 * 5 + 30 * 2
<end_of_step>
# Step 2: She needs whole weeks, so round the number of weeks up.
import math
weeks = math.ceil(600 / pages_per_week)
<end_of_step>
# Step 3: Now print the final answer.
print(weeks)
<end_of_code>
<output>
5
<end_of_output>
<answer>Maria needs \boxed{5} weeks.<end_of_answer>""",
    ),
)

# The format, stated for instruct models (the `chat` and `system` styles).
SYSTEM_PROMPT = """You solve math problems by writing Python code step by step.
Write each step as a comment `# Step k: <reasoning>` followed by the Python code of that step, \
and end every step with <end_of_step>. Keep the variables of earlier steps: all steps form one \
program. The last step prints the final answer and ends with <end_of_code>. The program's output \
then appears between <output> and <end_of_output>, and you finish with \
<answer>...\\boxed{answer}<end_of_answer>, the answer as a number or expression without units.
Use plain Python; the math, numpy and sympy modules are available."""

# ChatML, the chat template of both embedded models (Qwen2.5 and SmolLM2-Instruct); a test
# checks it against the default model's own template.
_IM_START, _IM_END = "<|im_start|>", "<|im_end|>"


def _chatml(role: str, content: str) -> str:
    return f"{_IM_START}{role}\n{content}{_IM_END}\n"


def chatml_prompt(messages: Sequence[Mapping[str, str]]) -> str:
    """`messages` in ChatML with the assistant's turn opened: the chat of a model that has no
    template of its own."""
    turns = "".join(_chatml(m["role"], m["content"]) for m in messages)
    return f"{turns}{_IM_START}assistant\n"


def _plain_examples(n: int) -> str:
    return "".join(
        f"{USER}:\n{p}\n{ASSISTANT}: {_ASSISTANT_OPENING}\n{sol}\n\n" for p, sol in _EXAMPLES[:n]
    )


def _chat_prefix(examples: int) -> str:
    turns = [_chatml("system", SYSTEM_PROMPT)]
    for p, sol in _EXAMPLES[:examples]:
        turns += [_chatml("user", p), _chatml("assistant", f"{_ASSISTANT_OPENING}\n{sol}")]
    return "".join(turns)


# few_shot: two plain-text examples (for base-like models); chat: the system prompt and all
# worked examples as earlier turns of a chat; system: the system prompt alone; bare: nothing
# (models trained on the format).
_PREFIX: dict[str, str] = {
    "few_shot": _plain_examples(2),
    "chat": _chat_prefix(len(_EXAMPLES)),
    "system": _chat_prefix(0),
    "bare": "",
}


def render_header(problem: str, style: PromptStyle = "bare") -> str:
    if style in ("chat", "system"):  # the assistant's turn stays open for the steps
        opening = f"{_IM_START}assistant\n{_ASSISTANT_OPENING}\n{CODE}\n"
        return _chatml("user", problem.strip()) + opening
    return f"{USER}:\n{problem.strip()}\n{ASSISTANT}: {_ASSISTANT_OPENING}\n{CODE}\n"


def render_prompt(problem: str, steps: Sequence[str], style: PromptStyle = "few_shot") -> str:
    """The prompt that asks for the next step after `steps` (rendered step texts)."""
    return _PREFIX[style] + render_header(problem, style) + "".join(steps)


def render_step(body: str, final: bool) -> str:
    """Canonical text of a step as it re-enters the prompt (a prefix extension of the parent)."""
    return f"{body}\n{CODE_END if final else STEP_END}\n"


def render_output(stdout: str) -> str:
    return f"{OUTPUT}\n{stdout}\n{OUTPUT_END}\n{ANSWER}"


def render_answer(answer_text: str) -> str:
    return f"{answer_text.strip()}{ANSWER_END}\n"


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """Text up to the earliest stop string, and that stop string (None if none occurs); for
    engines that cannot stop on every string themselves."""
    best, which = len(text), None
    for s in stops:
        i = text.find(s)
        if i != -1 and i < best:
            best, which = i, s
    return text[:best], which


@dataclass(frozen=True, slots=True)
class ParsedStep:
    ok: bool
    final: bool = False
    body: str = ""  # the step as written (comment + code), stripped
    reasoning: str = ""  # the leading comment, without '#'
    code: str = ""  # the Python below the leading comment
    error: str | None = None
    answer: str | None = None  # the text format: the answer the step states
    needs_more: bool = False  # the text format: the step stopped inside its code block


def parse_step(text: str, stop: str | None) -> ParsedStep:
    """Parse one generated step. Malformed output is a failed step, never an exception."""
    if stop != STEP_END and stop not in CODE_ENDS:
        why = "was cut off (length or end of text)" if stop is None else f"ended with {stop!r}"
        return ParsedStep(
            ok=False, error=f"malformed: step {why} instead of {STEP_END} or {CODE_END}"
        )
    body = text.strip()
    if body.startswith(CODE):
        body = body[len(CODE) :].strip()
    for tag in FORMAT_TAGS:
        if tag in body:
            return ParsedStep(ok=False, body=body, error=f"malformed: step contains {tag!r}")
    if not body:
        return ParsedStep(ok=False, error="malformed: empty step")
    lines = body.splitlines()
    i = 0
    while i < len(lines) and lines[i].lstrip().startswith("#"):
        i += 1
    reasoning = "\n".join(ln.lstrip().lstrip("#").strip() for ln in lines[:i]).strip()
    code = "\n".join(lines[i:]).strip("\n")
    final = stop in CODE_ENDS
    if final and not code.strip():
        return ParsedStep(
            ok=False, body=body, reasoning=reasoning, error="malformed: final step has no code"
        )
    return ParsedStep(ok=True, final=final, body=body, reasoning=reasoning, code=code)


def path_code(codes: Sequence[str]) -> str:
    """The program a step is verified with: the code of every step on its path, in order."""
    return "\n".join(c for c in codes if c.strip()) + "\n"


def syntax_error(code: str) -> str | None:
    """Cheap pre-check so a step that cannot even compile never costs a sandbox run."""
    try:
        compile(code, "<step>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError) as e:
        detail = getattr(e, "msg", None) or str(e)
        line = getattr(e, "lineno", None)
        return f"{type(e).__name__}: {detail}" + (f" (line {line})" if line else "")
    return None


def clip_output(text: str, limit: int = 1024) -> str:
    """Keep the head and tail of long output, like the official code, so prompts stay short."""
    text = text.strip()
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n...[{len(text) - 2 * half} characters omitted]...\n{text[-half:]}"


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_line(text: str | None) -> str | None:
    """The last non-empty line a program printed (its answer, in the code-augmented format)."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else None


def extract_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), braces matched; None if there is none."""
    found = None
    for m in _BOXED.finditer(text):
        depth, start = 1, m.end()
        for j in range(start, len(text)):
            ch = text[j]
            if ch == "{" and text[j - 1] != "\\":
                depth += 1
            elif ch == "}" and text[j - 1] != "\\":
                depth -= 1
                if depth == 0:
                    found = text[start:j].strip()
                    break
    return found or None


def normalize_step(body: str) -> str:
    """Key under which two candidate steps count as duplicates (whitespace-insensitive)."""
    return " ".join(body.split())
