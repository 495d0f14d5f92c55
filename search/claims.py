"""Does a step's comment say what its code computed? The arithmetic a comment claims, checked.

A policy trained on GSM8K writes its reasoning as "21 eggs x 2 weeks = 42 eggs" and its code
as `eggs * 2`. Its code is what runs and what the answer comes from, so a comment whose
arithmetic is false ("3 x 12 = 38") or whose final result is not the printed answer ("so she
made $40 - $65 = -$25" over a printed 25) is right only by the code's grace: as training data it
teaches the model to write false reasoning. Self-evolution keeps such trajectories out of the
SFT data and off the chosen side of preference pairs.

The check is conservative: it reads only `expression = number` where the expression is numbers
joined by operators (unit words in between are skipped: "200 shirts * 8 buttons/shirt");
number words, percentages and anything it cannot parse are left alone.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from fractions import Fraction

_TOKEN = re.compile(
    r"(?P<num>\d[\d,]*(?:\.\d+)?|\.\d+)(?P<pct>\s*%)?|(?P<op>[-+*/×÷()]|\b[xX]\b)"
    r"|(?P<word>[A-Za-z_'’]+)|(?P<skip>[$€£])|(?P<other>[^\s\w])"
)
_OPS = {"+": "+", "-": "-", "*": "*", "x": "*", "X": "*", "×": "*", "/": "/", "÷": "/"}


@dataclass(frozen=True, slots=True)
class Claim:
    expression: str  # as evaluated, e.g. "21*2"
    stated: float
    actual: float
    decimals: int = 0  # places the stated number shows

    @property
    def holds(self) -> bool:
        return _close(self.actual, self.stated, self.decimals)


def _decimals(num: str) -> int:
    return len(num.split(".", 1)[1]) if "." in num else 0


def _close(actual: float, stated: float, decimals: int) -> bool:
    if abs(actual - stated) <= 1e-6 * max(1.0, abs(stated)):
        return True
    # a stated result rounded to the places it shows ("10 / 3 = 3.33")
    return decimals > 0 and round(actual, decimals) == round(stated, decimals)


def _items(segment: str) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for m in _TOKEN.finditer(segment):
        if m.group("num"):
            if m.group("pct"):
                items.append(("stop", ""))
            else:
                items.append(("num", m.group("num").replace(",", "")))
        elif m.group("op"):
            op = m.group("op")
            if op in "()":
                items.append(("stop", ""))  # grouping is rare in comments: do not guess it
            else:
                items.append(("op", _OPS[op]))
        elif m.group("other"):  # "->", ":", ";", ",": the arithmetic does not run across it
            items.append(("stop", ""))
        # words and currency signs are skipped
    return items


def _expression(segment: str) -> str | None:
    """The arithmetic at the end of `segment`: the longest run of `number (op number)+`,
    unit words skipped; None unless it holds at least two numbers."""
    items = _items(segment)
    while items and items[-1][0] == "op":  # a unit's slash: "8 buttons/shirt ="
        items.pop()
    run: list[str] = []
    want_num = False  # scanning backwards: the last item must be a number
    i = len(items) - 1
    while i >= 0:
        kind, text = items[i]
        if kind == "num" and (not run or want_num):
            run.append(text)
            want_num = False
        elif kind == "op" and run and not want_num:
            run.append(text)
            want_num = True
        else:
            break
        i -= 1
    if want_num and not (run[-1] == "-" and (i < 0 or items[i][0] == "stop")):
        run.pop()  # a dangling operator; a minus at the start is the first number's sign
    if sum(1 for t in run if t not in "+-*/") < 2:
        return None
    return "".join(reversed(run))


def _evaluate(expression: str) -> float | None:
    tokens = re.findall(r"\d+(?:\.\d+)?|\.\d+|[-+*/]", expression)
    # exact arithmetic: "/" and "*" before "+" and "-"
    terms: list[Fraction] = []
    sign, acc, op = 1, None, None
    for t in tokens:
        if t in "+-":
            if acc is None:
                if terms or t == "+":
                    return None
                sign = -1  # a leading minus
                continue
            terms.append(sign * acc)
            sign, acc, op = (1 if t == "+" else -1), None, None
        elif t in "*/":
            op = t
        else:
            v = Fraction(t)
            if acc is None:
                acc = v
            elif op == "*":
                acc *= v
            elif op == "/":
                if v == 0:
                    return None
                acc /= v
            else:
                return None
            op = None
    if acc is None:
        return None
    terms.append(sign * acc)
    return float(sum(terms))


def _leading(segment: str) -> tuple[float, int] | None:
    """The value of the arithmetic a right-hand side starts with ("$3 + 42 in all" → 45, "-$25"
    → -25) and the most decimal places shown; words end it."""
    m = re.match(
        r"\s*(-)?\s*[$€£]?\s*((?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:\s*[-+*/×÷]\s*[$€£]?\s*"
        r"(?:\d[\d,]*(?:\.\d+)?|\.\d+))*)(?!\s*%)(?![\d.,]*\d)",
        segment,
    )
    if m is None or not m.group(2):
        return None
    body = re.sub(r"[$€£\s,]", "", m.group(2)).replace("×", "*").replace("÷", "/")
    value = _evaluate(("-" if m.group(1) else "") + body)
    if value is None:
        return None
    places = max((_decimals(n) for n in re.findall(r"[\d.]+", body)), default=0)
    return value, places


def claims(text: str) -> list[Claim]:
    """Every `expression = value` the text states, both sides evaluated."""
    parts = text.split("=")
    out = []
    for left, right in itertools.pairwise(parts):
        expr = _expression(left)
        rhs = _leading(right)
        if expr is None or rhs is None:
            continue
        actual = _evaluate(expr)
        if actual is None:
            continue
        out.append(Claim(expr, rhs[0], actual, rhs[1]))
    return out


def false_claims(text: str) -> list[Claim]:
    return [c for c in claims(text) if not c.holds]


def stated_result(text: str) -> float | None:
    """The value after the text's last "=" ("… = -$25 in all" → -25), if it is arithmetic."""
    if "=" not in text:
        return None
    rhs = _leading(text.rsplit("=", 1)[1])
    return rhs[0] if rhs else None


def contradicts_answer(reasoning: str, answer: str | None) -> bool:
    """Does the final step's comment end on a result that is not the answer?"""
    stated = stated_result(reasoning)
    if stated is None or answer is None:
        return False
    try:
        value = float(Fraction(answer.replace(",", "").replace("$", "").strip()))
    except (ValueError, ZeroDivisionError):
        return False
    return not _close(value, stated, _decimals(answer))
