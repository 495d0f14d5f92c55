"""Plain chain-of-thought steps, as off-the-shelf math models write them (the `text` format).

A step is the text up to a blank line (the delimiter, `"\\n\\n"` unless configured otherwise),
as search-and-learn and its_hub split solutions and as Qwen2.5-Math-PRM reads them. The answer
is the last `\\boxed{...}`: a step that boxes one ends the solution. A step that ends the
generation (end of sequence) ends it too, its answer the boxed one or what follows "the answer
is" (in it, else in the steps before it: a model may end with an empty step); a step cut off at
the step's token limit without one is dropped, as a code-format step that runs out of tokens is.

A step may hold one fenced Python block (tool-integrated reasoning, as Qwen2.5-Math writes it):
generation stops at the model's own "```output", the block runs in the sandbox on its own (each
block is a whole program, as Qwen's evaluation runs only the last one), and its stdout follows it
as "```output\\n...\\n```". A block that fails drops the step. A block with a blank line inside
stops generation at the delimiter before it closes: the search asks the model to go on to the
closing fence (`needs_more`), so that the step holds the whole block.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from search.steps import ParsedStep, extract_boxed

DELIMITER = "\n\n"
OUTPUT_FENCE = "```output"
FENCE = "```"
# Qwen2.5-Math's chain-of-thought system prompt; its PRM is trained on the same chat.
SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."

_OPEN = re.compile(r"^[ \t]*```[ \t]*(?:python3?|py)[ \t]*$", re.MULTILINE | re.IGNORECASE)
_CLOSE = re.compile(r"^[ \t]*```[ \t]*$", re.MULTILINE)
_ANSWER_IS = re.compile(r"\banswer is\b:?", re.IGNORECASE)


def text_stops(delimiter: str = DELIMITER) -> tuple[str, ...]:
    """The step's end, and the model starting an output block (the sandbox writes it)."""
    return (delimiter, OUTPUT_FENCE)


def answer_is(text: str) -> str | None:
    """What follows the last "the answer is" on its line, without $, bold or the final full
    stop; None if there is no such phrase or nothing after it."""
    found = None
    for m in _ANSWER_IS.finditer(text):
        rest = text[m.end() :].split("\n", 1)[0].strip()
        rest = rest.strip("*$ \t").rstrip(".").strip("*$ \t")
        found = rest or found
    return found


def text_answer(text: str) -> str | None:
    """A solution's answer: the last \\boxed{...}, else what follows "the answer is"."""
    return extract_boxed(text) or answer_is(text)


def parse_text_step(
    text: str, stop: str | None, truncated: bool = False, delimiter: str = DELIMITER
) -> ParsedStep:
    """Parse one generated text step. `stop`: the stop string that ended it (None: end of
    sequence or, with `truncated`, the token limit). Never raises for malformed output.

    A step with a code block ends at its closing fence: what the model wrote after it, before
    seeing the output, is dropped (it goes on after the output), unless it boxes the answer,
    which ends the solution there."""
    if stop is not None and stop not in (delimiter, OUTPUT_FENCE):
        return ParsedStep(ok=False, error=f"malformed: step ended with {stop!r}")
    before, code, body, tail = text, "", text, ""
    opened = _OPEN.search(text)
    if opened:
        before = text[: opened.start()]
        closed = _CLOSE.search(text, opened.end())
        if closed:
            code, body = text[opened.end() : closed.start()], text[: closed.end()]
            tail = text[closed.end() :]
        elif stop == OUTPUT_FENCE:  # "```output" right after the code: its ``` closed the block
            code, body = text[opened.end() :], text.rstrip() + "\n" + FENCE
        elif stop == delimiter:  # a blank line inside the block: the model goes on to its end
            return ParsedStep(ok=True, body=text.strip(), needs_more=True)
        else:
            why = "was cut off at the step's token limit" if truncated else "ended"
            return ParsedStep(
                ok=False, body=text.strip(), error=f"malformed: step {why} inside a code block"
            )
        code = code.strip("\n")
        if not code.strip():
            return ParsedStep(ok=False, body=body.strip(), error="malformed: empty code block")
        if extract_boxed(tail) is not None:
            body = text
        else:
            tail = ""
    elif stop == OUTPUT_FENCE:
        return ParsedStep(
            ok=False, body=text.strip(), error="malformed: an output block with no code before it"
        )
    body = body.strip()
    reasoning = "\n".join(part for part in (before.strip(), tail.strip()) if part)
    if not body:
        if stop is None and not truncated:  # the model ended its solution after the last step
            return ParsedStep(ok=True, final=True)
        return ParsedStep(ok=False, error="malformed: empty step")
    boxed = extract_boxed(reasoning)
    if boxed is not None:
        return ParsedStep(
            ok=True, final=True, body=body, reasoning=reasoning, code=code, answer=boxed
        )
    if code:  # the model reads the block's output next, however its generation ended
        return ParsedStep(ok=True, body=body, reasoning=reasoning, code=code)
    if truncated:
        return ParsedStep(
            ok=False,
            body=body,
            error="malformed: step was cut off at the step's token limit (no delimiter)",
        )
    final = stop is None  # the model ended its solution here
    answer = answer_is(reasoning) if final else None
    return ParsedStep(
        ok=True, final=final, body=body, reasoning=reasoning, code=code, answer=answer
    )


def render_text_step(body: str, output: str | None = None, delimiter: str = DELIMITER) -> str:
    """A step as it re-enters the prompt: its text, the output of its code block when it ran,
    and the delimiter (so every child's prompt extends its parent's)."""
    if output is not None:
        body = f"{body}\n{OUTPUT_FENCE}\n{output}\n{FENCE}"
    return body + delimiter


def earlier_answer(texts: Sequence[str]) -> str | None:
    """The answer stated last in the steps before a final one that states none (a model that
    ends its solution, after "the answer is ...", with a step that does not repeat it)."""
    for text in reversed(texts):
        if (found := text_answer(text)) is not None:
            return found
    return None
