"""The subtree cache behind `search.protocols.ExpansionCache`: Redis when `RSTAR_REDIS_URL` is
set (replicas share expansions), an in-process LRU otherwise.

Both are bounded: entries expire after `RSTAR_CACHE_TTL_S`; the LRU holds at most
`RSTAR_CACHE_MAX_ENTRIES` and Redis is expected to run with `maxmemory` and an LRU eviction
policy (the Helm chart's Redis does). An entry larger than `RSTAR_CACHE_MAX_ENTRY_BYTES` is not
stored. Redis being down or slow is never an error for a request: a failed or timed-out call
counts in `rstar_cache_errors_total`, sets `rstar_cache_up` to 0, and the cache answers misses
(and skips stores) for `RSTAR_CACHE_RETRY_S` before trying Redis again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

log = logging.getLogger(__name__)

KEY_PREFIX = "rstar:expansion:"


class CacheObserver(Protocol):
    def cache_lookup(self, backend: str, hits: int, misses: int) -> None: ...
    def cache_error(self, backend: str, op: str) -> None: ...
    def cache_up(self, backend: str, up: bool) -> None: ...


def _encode(records: list[dict]) -> bytes:
    return json.dumps(records, ensure_ascii=False, separators=(",", ":")).encode()


class MemoryCache:
    """In-process LRU with a TTL (one replica's expansions only)."""

    backend = "memory"

    def __init__(
        self,
        max_entries: int,
        ttl_s: float,
        max_entry_bytes: int,
        observer: CacheObserver | None = None,
    ) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.max_entry_bytes = max_entry_bytes
        self.observer = observer
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    async def get_many(self, keys: Sequence[str]) -> list[list[dict] | None]:
        now = time.monotonic()
        out: list[list[dict] | None] = []
        for key in keys:
            item = self._data.get(key)
            if item is None or item[0] < now:
                if item is not None:
                    del self._data[key]
                out.append(None)
                continue
            self._data.move_to_end(key)
            out.append(json.loads(item[1]))
        if self.observer:
            hits = sum(1 for o in out if o is not None)
            self.observer.cache_lookup(self.backend, hits, len(out) - hits)
        return out

    async def put_many(self, items: Sequence[tuple[str, list[dict]]]) -> None:
        expires = time.monotonic() + self.ttl_s
        for key, records in items:
            data = _encode(records)
            if len(data) > self.max_entry_bytes:
                continue
            self._data[key] = (expires, data)
            self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._data.clear()


class RedisCache:
    """Expansions in Redis, shared by every replica; degrades to misses when Redis fails."""

    backend = "redis"

    def __init__(
        self,
        url: str,
        ttl_s: float,
        max_entry_bytes: int,
        timeout_s: float,
        retry_s: float,
        observer: CacheObserver | None = None,
    ) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = url
        self.ttl_s = ttl_s
        self.max_entry_bytes = max_entry_bytes
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.observer = observer
        # No retries inside the client: a slow Redis must cost one timeout, not several.
        self.client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._down_until = 0.0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, op: str, exc: BaseException) -> None:
        if self.available:
            log.warning(
                "redis cache %s failed (%s: %s); running without the cache for %.0fs",
                op,
                type(exc).__name__,
                exc,
                self.retry_s,
            )
        self._down_until = time.monotonic() + self.retry_s
        if self.observer:
            self.observer.cache_error(self.backend, op)
            self.observer.cache_up(self.backend, False)

    def _ok(self) -> None:
        if self.observer:
            self.observer.cache_up(self.backend, True)

    async def get_many(self, keys: Sequence[str]) -> list[list[dict] | None]:
        misses: list[list[dict] | None] = [None] * len(keys)
        if not keys:
            return misses
        if not self.available:
            if self.observer:
                self.observer.cache_lookup(self.backend, 0, len(keys))
            return misses
        try:
            async with asyncio.timeout(self.timeout_s):
                raw = await self.client.mget([KEY_PREFIX + k for k in keys])
        except Exception as e:  # connection refused, timeout, protocol error: all mean "no cache"
            self._failed("get", e)
            if self.observer:
                self.observer.cache_lookup(self.backend, 0, len(keys))
            return misses
        self._ok()
        out: list[list[dict] | None] = []
        for value in raw:
            try:
                out.append(json.loads(value) if value is not None else None)
            except ValueError:
                out.append(None)  # a corrupt entry is a miss; the store overwrites it
        if self.observer:
            hits = sum(1 for o in out if o is not None)
            self.observer.cache_lookup(self.backend, hits, len(out) - hits)
        return out

    async def put_many(self, items: Sequence[tuple[str, list[dict]]]) -> None:
        if not items or not self.available:
            return
        ttl_ms = max(1, int(self.ttl_s * 1000))
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self.client.pipeline(transaction=False) as pipe:
                    for key, records in items:
                        data = _encode(records)
                        if len(data) <= self.max_entry_bytes:
                            pipe.set(KEY_PREFIX + key, data, px=ttl_ms)
                    await pipe.execute()
        except Exception as e:
            self._failed("put", e)
            return
        self._ok()

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.client.ping()
        except Exception as e:
            self._failed("ping", e)
            return False
        self._down_until = 0.0
        self._ok()
        return True

    async def aclose(self) -> None:
        await self.client.aclose()


def create_cache(settings, observer: CacheObserver | None = None) -> MemoryCache | RedisCache:
    """Redis at `settings.redis_url` if set, else the in-process LRU."""
    if settings.redis_url:
        return RedisCache(
            settings.redis_url,
            settings.cache_ttl_s,
            settings.cache_max_entry_bytes,
            settings.cache_timeout_s,
            settings.cache_retry_s,
            observer,
        )
    return MemoryCache(
        settings.cache_max_entries, settings.cache_ttl_s, settings.cache_max_entry_bytes, observer
    )
