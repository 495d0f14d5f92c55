"""The expansion cache: replaying and continuing searches, the in-process LRU's bounds, and a
real redis-server shared by two app instances, killed mid-run, and made slow.

The policy here is the scripted test double (these tests are about the cache, not the model);
the sandbox is the real nsjail pool.
"""

import asyncio

import httpx
import pytest
import redis.asyncio as aioredis

from search import Budget, Components, SearchConfig, run_search
from server.app import create_app
from server.cache import MemoryCache, RedisCache
from server.metrics import Metrics
from tests.support.redis_server import redis_server
from tests.support.scripted import ScriptedPolicy, finishing
from tests.support.service import eventually, scripted_service

PROBLEM = "Tom has 3 boxes of 12 pencils and gives away 7. How many are left?"
CONFIG = SearchConfig(candidates=2, max_depth=4, parallel_rollouts=2)


def memory(observer=None, max_entries=1000, ttl_s=3600.0):
    return MemoryCache(max_entries, ttl_s, 1 << 20, observer)


async def search(sandbox, cache, policy=None, rollouts=4, namespace="m1", algorithm="mcts"):
    policy = policy or ScriptedPolicy(default=finishing)
    comps = Components(policy, sandbox, cache=cache, cache_namespace=namespace)
    res = await run_search(algorithm, PROBLEM, comps, Budget(rollouts=rollouts), CONFIG)
    return res, policy


def shape(res):
    return [(n.parent, n.text, n.status, n.answer) for n in res.tree.nodes]


@pytest.mark.parametrize("algorithm", ["mcts", "best_of_n", "self_consistency", "greedy"])
async def test_a_repeated_search_replays_from_the_cache_without_the_policy(sandbox, algorithm):
    cache = memory()
    first, p1 = await search(sandbox, cache, algorithm=algorithm)
    assert p1.calls and first.usage.cache_hits == 0 and first.usage.cache_misses > 0
    again, p2 = await search(sandbox, cache, algorithm=algorithm)
    assert p2.calls == []  # nothing generated
    assert again.usage.tokens == 0 and again.usage.sandbox_runs == 0
    assert again.usage.cache_hits == first.usage.cache_misses and again.usage.cache_misses == 0
    assert shape(again) == shape(first) and again.answer == first.answer


async def test_a_continued_search_reuses_what_is_cached_and_generates_the_rest(sandbox):
    cache = memory()
    small, _ = await search(sandbox, cache, rollouts=2)
    big, policy = await search(sandbox, cache, rollouts=8)
    assert big.usage.cache_hits == small.usage.cache_misses > 0
    assert big.usage.cache_misses > 0 and policy.calls  # the rest was generated
    assert len(big.tree) > len(small.tree)


async def test_other_models_or_settings_never_see_each_others_expansions(sandbox):
    cache = memory()
    await search(sandbox, cache, namespace="policy-v1")
    other, policy = await search(sandbox, cache, namespace="policy-v2")
    assert other.usage.cache_hits == 0 and policy.calls


async def test_memory_cache_is_bounded_by_size_and_age():
    cache = memory(max_entries=2, ttl_s=0.2)
    await cache.put_many([("a", [{"x": 1}]), ("b", [{"x": 2}]), ("c", [{"x": 3}])])
    assert len(cache) == 2 and await cache.get_many(["a", "b", "c"]) == [
        None,
        [{"x": 2}],
        [{"x": 3}],
    ]
    await asyncio.sleep(0.3)
    assert await cache.get_many(["b", "c"]) == [None, None]
    big = MemoryCache(10, 60, 1024)
    await big.put_many([("k", [{"text": "x" * 2000}])])  # larger than an entry may be
    assert await big.get_many(["k"]) == [None]


# --- Redis -----------------------------------------------------------------------------------


@pytest.fixture
def redis_proc(tmp_path):
    with redis_server(tmp_path) as proc:
        yield proc


def redis_cache(url, observer=None, timeout_s=0.25, retry_s=60.0):
    return RedisCache(url, 3600, 1 << 20, timeout_s, retry_s, observer)


def client_for(svc):
    app = create_app(svc, manage_service=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def metric(text, name):
    lines = [ln for ln in text.splitlines() if ln.startswith(name)]
    return sum(float(ln.split()[-1]) for ln in lines)


async def test_two_app_instances_share_expansions_through_redis(sandbox, redis_proc):
    body = {"problem": PROBLEM, "budget": {"rollouts": 4}}
    a_metrics, b_metrics = Metrics(), Metrics()
    pa, pb = ScriptedPolicy(default=finishing), ScriptedPolicy(default=finishing)
    a = scripted_service(sandbox, pa, redis_cache(redis_proc.url, a_metrics))
    b = scripted_service(sandbox, pb, redis_cache(redis_proc.url, b_metrics))
    a.metrics, b.metrics = a_metrics, b_metrics
    async with client_for(a) as ca, client_for(b) as cb:
        ra = (await ca.post("/solve", json=body)).json()
        rb = (await cb.post("/solve", json=body)).json()
        text_b = (await cb.get("/metrics")).text
    assert pa.calls and pb.calls == []  # replica B generated nothing
    assert rb["usage"]["cache_hits"] == ra["usage"]["cache_misses"] > 0
    assert rb["answer"] == ra["answer"] and rb["usage"]["tokens"] == 0
    assert metric(text_b, 'rstar_cache_hits_total{backend="redis"}') > 0
    assert metric(text_b, "rstar_cache_errors_total") == 0
    keys = await aioredis.Redis.from_url(redis_proc.url).keys("rstar:expansion:*")
    assert len(keys) == ra["usage"]["cache_misses"]
    for svc in (a, b):
        await svc.cache.aclose()


async def test_redis_killed_mid_run_the_request_still_succeeds_and_a_metric_says_so(
    sandbox, redis_proc
):
    second_wave = asyncio.Event()

    class Policy(ScriptedPolicy):
        async def generate(self, requests):
            if len(self.calls) >= 2:
                second_wave.set()
            return await super().generate(requests)

    policy = Policy(default=finishing, delay_s=0.3)
    svc = scripted_service(sandbox, policy)
    svc.cache = redis_cache(redis_proc.url, svc.metrics)
    async with client_for(svc) as c:
        first = asyncio.create_task(
            c.post("/solve", json={"problem": PROBLEM, "budget": {"rollouts": 6}})
        )
        await second_wave.wait()  # at least one wave went through Redis
        redis_proc.kill()
        r = await first
        assert r.status_code == 200, r.text
        again = await c.post(
            "/solve", json={"problem": PROBLEM + " Twice.", "budget": {"rollouts": 2}}
        )
        assert again.status_code == 200
        text = (await c.get("/metrics")).text
        ready = (await c.get("/readyz")).json()
    assert metric(text, "rstar_cache_errors_total") >= 1
    assert metric(text, 'rstar_cache_up{backend="redis"}') == 0
    assert ready["status"] == "ok" and ready["checks"]["cache"] == "redis: down"
    await svc.cache.aclose()


async def redis_is_asleep(url: str) -> bool:
    """Does a PING on a fresh connection go unanswered for a while (DEBUG SLEEP holds Redis)?"""
    probe = aioredis.Redis.from_url(url, socket_timeout=0.1)
    try:
        await probe.ping()
        return False
    except aioredis.RedisError:
        return True
    finally:
        await probe.aclose()


async def test_a_slow_redis_costs_one_timeout_not_the_request(redis_proc):
    observer = Metrics()
    cache = redis_cache(redis_proc.url, observer, timeout_s=0.2, retry_s=0.5)
    await cache.put_many([("k", [{"status": "open"}])])
    assert await cache.get_many(["k"]) == [[{"status": "open"}]]
    mgets = 0
    real_mget = cache.client.mget

    async def counted_mget(*args, **kwargs):
        nonlocal mgets
        mgets += 1
        return await real_mget(*args, **kwargs)

    cache.client.mget = counted_mget
    blocker = aioredis.Redis.from_url(redis_proc.url)
    sleeper = asyncio.create_task(blocker.execute_command("DEBUG", "SLEEP", "3"))
    while not await redis_is_asleep(redis_proc.url):
        assert not sleeper.done(), "DEBUG SLEEP ended before Redis was seen asleep"
    assert await cache.get_many(["k"]) == [None]  # timed out: a miss
    assert not sleeper.done() and not cache.available  # it did not wait for Redis to wake
    assert await cache.get_many(["k"]) == [None]  # skipped while Redis is marked down:
    assert mgets == 1  # no second call to Redis
    await sleeper
    await eventually(lambda: cache.available)  # retry_s later Redis is tried again, and answers
    assert await cache.get_many(["k"]) == [[{"status": "open"}]] and mgets == 2
    assert metric(observer.render().decode(), "rstar_cache_errors_total") == 1
    await blocker.aclose()
    await cache.aclose()
