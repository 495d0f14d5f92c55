"""Answer equivalence with math-verify, bounded in time from outside.

math-verify's own timeouts use SIGALRM, which only works in the main thread; a server calls the
grader from worker threads and event loops. So its timeouts are turned off and each comparison
runs in a small process pool (pebble) whose task is killed when it overruns: a sympy
simplification that never ends costs one worker, not the search.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from pebble import ProcessPool

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
T = TypeVar("T")


def _quiet_worker() -> None:
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    import math_verify  # noqa: F401  (import once per worker, not per call)


def _wrap(answer: str) -> str:
    answer = answer.strip()
    return answer if "\\boxed" in answer else "\\boxed{" + answer + "}"


def _verify(gold: str, pred: str) -> bool:
    from math_verify import parse, verify

    g = parse(_wrap(gold), parsing_timeout=None)
    p = parse(_wrap(pred), parsing_timeout=None)
    return bool(g and p and verify(g, p, timeout_seconds=None))


class Grader:
    """Decides whether a predicted answer equals the gold one. Thread-safe; results cached."""

    def __init__(
        self,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        workers: int = 1,
        cache_size: int = 65536,
        compare: Callable[[str, str], bool] = _verify,
    ) -> None:
        self.timeout_s = timeout_s
        self._compare = compare  # runs in the worker: must be importable by module path
        self.workers = workers
        self._pool: ProcessPool | None = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._cache_size = cache_size
        self.timeouts = 0

    def _get_pool(self) -> ProcessPool:
        with self._lock:
            if self._pool is None or not self._pool.active:
                # spawn: never fork a process that may hold inference threads or an event loop
                self._pool = ProcessPool(
                    max_workers=self.workers,
                    initializer=_quiet_worker,
                    context=multiprocessing.get_context("spawn"),
                )
            return self._pool

    def _cached(self, key: tuple[str, str]) -> bool | None:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
            return hit

    def _store(self, key: tuple[str, str], value: bool) -> bool:
        with self._lock:
            self._cache[key] = value
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return value

    @staticmethod
    def _trivial(gold: str, pred: str) -> bool | None:
        g, p = gold.strip(), pred.strip()
        if not g or not p:
            return False
        if g == p:
            return True
        return None

    def equal(self, gold: str, pred: str) -> bool:
        """True when `pred` is mathematically the same answer as `gold` (gold first)."""
        trivial = self._trivial(gold, pred)
        if trivial is not None:
            return trivial
        key = (gold, pred)
        hit = self._cached(key)
        if hit is not None:
            return hit
        future = self._get_pool().schedule(self._compare, args=(gold, pred), timeout=self.timeout_s)
        try:
            return self._store(key, bool(future.result()))
        except FutureTimeout:
            self.timeouts += 1
            log.warning("grading timed out after %.1fs: %r vs %r", self.timeout_s, gold, pred)
            return self._store(key, False)
        except Exception as e:  # a crash in sympy/antlr is "not equal", never an error
            log.warning("grading failed (%s): %r vs %r", type(e).__name__, gold, pred)
            return self._store(key, False)

    async def aequal(self, gold: str, pred: str) -> bool:
        trivial = self._trivial(gold, pred)
        if trivial is not None:
            return trivial
        hit = self._cached((gold, pred))
        if hit is not None:
            return hit
        return await asyncio.to_thread(self.equal, gold, pred)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.stop()
                self._pool.join()
                self._pool = None


_default: Grader | None = None
_default_lock = threading.Lock()


def default_grader() -> Grader:
    """The process-wide grader (one small worker pool shared by every search)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Grader()
        return _default


def answers_equal(gold: str, pred: str) -> bool:
    return default_grader().equal(gold, pred)


def group_equal(items: Iterable[T], answer: Callable[[T], str]) -> list[list[T]]:
    """`items` grouped by equivalent answers, each compared with its group's first, the groups
    in the order their first item came (offline, where a search's judge groups as it goes)."""
    groups: list[list[T]] = []
    for item in items:
        for g in groups:
            if answers_equal(answer(g[0]), answer(item)):
                g.append(item)
                break
        else:
            groups.append([item])
    return groups
