"""Who gets a search slot: the server's slots shared fairly between API keys, and each key's own
limits (searches in flight, requests per minute).

asyncio's Semaphore wakes waiters first come, first served, so one key that queues thirty
searches makes every other key wait behind all thirty. `FairSlots` hands a freed slot to the
keys with waiters in turn (round-robin), so each key's queue moves at the same pace whatever
the others send. Nothing on PyPI does this for asyncio, hence by hand.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections import OrderedDict, deque


class FairSlots:
    """`capacity` slots; `acquire(key)` waits its key's turn when all are busy."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.busy = 0
        self._queues: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    def locked(self) -> bool:
        return self.busy >= self.capacity

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())

    async def acquire(self, key: str) -> None:
        if self.busy < self.capacity and not self._queues:
            self.busy += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(key, deque()).append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over as the waiter gave up: pass it on
            else:
                q = self._queues.get(key)
                if q is not None and fut in q:
                    q.remove(fut)
                    if not q:
                        del self._queues[key]
            raise

    def release(self) -> None:
        """Give the slot to the next key in turn that has a waiter, else free it."""
        while self._queues:
            key, q = next(iter(self._queues.items()))
            fut = q.popleft()
            if q:
                self._queues.move_to_end(key)  # its next waiter goes after the other keys'
            else:
                del self._queues[key]
            if not fut.done():
                fut.set_result(None)  # the slot changes hands: busy stays the same
                return
        self.busy -= 1


class KeyLimits:
    """Per key: searches in flight (queued or running) and requests in the last minute."""

    def __init__(self, max_in_flight: int | None, per_minute: int | None) -> None:
        self.max_in_flight = max_in_flight
        self.per_minute = per_minute
        self.in_flight: collections.Counter[str] = collections.Counter()
        self._recent: dict[str, deque[float]] = {}

    def refusal(self, key: str) -> tuple[str, float] | None:
        """(why, seconds to wait) when `key` may not start another search now."""
        if self.max_in_flight is not None and self.in_flight[key] >= self.max_in_flight:
            return (
                f"this API key has {self.in_flight[key]} searches in flight, its limit "
                "(RSTAR_KEY_MAX_IN_FLIGHT); wait for one to finish",
                1.0,
            )
        if self.per_minute is not None:
            recent = self._window(key)
            if len(recent) >= self.per_minute:
                wait = 60.0 - (time.monotonic() - recent[0])
                return (
                    f"this API key sent {len(recent)} requests in the last minute, its "
                    "limit (RSTAR_KEY_REQUESTS_PER_MINUTE)",
                    wait,
                )
        return None

    def enter(self, key: str) -> None:
        self.in_flight[key] += 1
        if self.per_minute is not None:
            self._window(key).append(time.monotonic())

    def leave(self, key: str) -> None:
        self.in_flight[key] -= 1
        if self.in_flight[key] <= 0:
            del self.in_flight[key]

    def _window(self, key: str) -> deque[float]:
        recent = self._recent.setdefault(key, deque())
        cutoff = time.monotonic() - 60.0
        while recent and recent[0] <= cutoff:
            recent.popleft()
        return recent


def retry_after(seconds: float) -> int:
    """Whole seconds for a Retry-After header (at least 1)."""
    return max(1, math.ceil(seconds))
