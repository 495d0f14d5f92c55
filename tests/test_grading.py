"""Answer equivalence (math-verify, gold first) and the bounds around it."""

import asyncio
import threading
import time

import pytest

from search.grading import Grader, answers_equal


@pytest.mark.parametrize(
    ("gold", "pred"),
    [
        # GSM8K-style numbers
        ("1000", "1,000"),
        ("18", "18.0"),
        ("18", "18.00"),
        ("-3", "- 3"),
        ("18", "\\$18"),
        ("10", "10\\%"),
        # MATH-500-style LaTeX
        ("\\frac{1}{2}", "0.5"),
        ("\\frac{1}{2}", "\\dfrac12"),
        ("\\frac{2}{3}", "2/3"),
        ("3\\sqrt{2}", "\\sqrt{18}"),
        ("[2,5)", "[2, 5)"),
        ("(1,2)", "(1, 2)"),
        ("\\{1,2\\}", "\\{2,1\\}"),
        ("\\text{(C)}", "C"),
        ("\\text{Evelyn}", "Evelyn"),
        ("5", "x=5"),
        ("\\boxed{7}", "7"),
    ],
)
def test_equivalent_answers(gold, pred):
    assert answers_equal(gold, pred)


@pytest.mark.parametrize(
    ("gold", "pred"),
    [
        ("18", "19"),
        ("1000", "1000.0001"),
        ("(2,5)", "[2,5)"),  # open vs half-open interval
        ("\\frac{1}{2}", "\\frac{1}{3}"),
        ("5", ""),
        ("", "5"),
        ("5", "   "),
        ("5", "\\frac{"),  # unparseable prediction is wrong, not an error
        ("5", "}}}{{{"),
        ("5", "x" * 5000),
    ],
)
def test_different_or_garbage_answers(gold, pred):
    assert not answers_equal(gold, pred)


def test_works_outside_the_main_thread():
    """math-verify's SIGALRM timeouts break in threads; ours must not."""
    results = []
    t = threading.Thread(target=lambda: results.append(Grader().equal("1000", "1,000")))
    t.start()
    t.join(60)
    assert results == [True]


async def test_async_api_does_not_block_the_loop():
    """While a comparison runs (a second in the worker, after the worker's start) the event loop
    keeps turning: a ticker on the same loop counts its turns meanwhile."""
    g = Grader(compare=slow_compare)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        await asyncio.sleep(0)  # the ticker is running
        before = ticks
        assert await g.aequal("1/2", "0.5") is True
        during = ticks - before
    finally:
        ticker.cancel()
        g.close()
    assert during >= 20, during  # a blocked loop would not have ticked at all
    real = Grader()
    ok, bad = await asyncio.gather(real.aequal("\\frac{1}{2}", "0.5"), real.aequal("2", "3"))
    assert ok and not bad
    real.close()


def slow_compare(gold: str, pred: str) -> bool:  # runs in the grader's worker process
    time.sleep(1.0)
    return True


def sleepy_compare(gold: str, pred: str) -> bool:  # runs in the grader's worker process
    time.sleep(60)
    return True


def test_a_comparison_that_never_ends_is_cut_off_and_the_grader_recovers():
    g = Grader(timeout_s=1.0, compare=sleepy_compare)
    t0 = time.monotonic()
    assert g.equal("1", "2") is False
    assert time.monotonic() - t0 < 30
    assert g.timeouts == 1
    g._compare = Grader()._compare  # same pool, real comparison: the killed worker was replaced
    assert g.equal("1/2", "0.5") is True
    g.close()


def test_results_are_cached():
    g = Grader(timeout_s=1.0, compare=sleepy_compare)
    g._store(("a", "b"), True)
    assert g.equal("a", "b") is True  # from the cache: the sleepy worker is never asked
    assert g.timeouts == 0
