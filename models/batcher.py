"""Gathers concurrent calls into batches for engines that have no scheduler of their own.

Many searches call `generate`/`score` at once; a transformers model is fastest when it sees
them together. One thread owns the model: it takes everything queued (up to `max_batch`),
runs one batched call, and resolves the callers' futures. Callers from any thread or event
loop can submit, so the model is shared by the whole process.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    def __init__(self, fn: Callable[[list[T]], Sequence[R]], max_batch: int, name: str) -> None:
        self._fn = fn
        self._max = max_batch
        self._queue: queue.Queue[tuple[T, Future[R]] | None] = queue.Queue()
        self.batches: list[int] = []  # size of every batch run, for benchmarks
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            live = [(item, fut) for item, fut in batch if fut.set_running_or_notify_cancel()]
            if not live:
                continue
            self.batches.append(len(live))
            try:
                results = self._fn([item for item, _ in live])
                for (_, fut), res in zip(live, results, strict=True):
                    fut.set_result(res)
            except BaseException as e:  # hand the failure to every caller of this batch
                log.exception("batched call failed")
                for _, fut in live:
                    fut.set_exception(e)

    def submit(self, item: T) -> Future[R]:
        fut: Future[R] = Future()
        self._queue.put((item, fut))
        return fut

    async def run(self, items: Sequence[T]) -> list[R]:
        """Submit all items at once (so they can share a batch) and await their results."""
        futures = [asyncio.wrap_future(self.submit(item)) for item in items]
        return list(await asyncio.gather(*futures))

    def close(self) -> None:
        self._queue.put(None)
