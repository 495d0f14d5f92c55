"""Serving several tenants: API keys (missing, wrong, right; the API's own error shapes; the
OpenAI SDK and the rstar client passing them), per-key limits (in flight, per minute, 429 with
Retry-After), fair sharing of the search slots between keys, metrics by key name (never the
key), and request-size limits before parsing. Real uvicorn, real nsjail, a scripted policy
(the policy is not what is tested)."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from clients.client import AsyncRstarClient, RstarError
from server.admission import FairSlots, KeyLimits
from server.auth import ApiKeys, KeyConfigError, Unauthorized
from tests.support.scripted import ScriptedPolicy, endless
from tests.support.service import eventually, metric, scripted_service, serving

A, B = "alpha-key-0123456789", "bravo-key-9876543210"
KEYS = f"team-a:{A},team-b:{B}"
QUICK = {"problem": "Count.", "budget": {"rollouts": 2, "time_limit_s": 1}}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --------------------------------------------------------------------------- units


def test_keys_load_from_the_setting_and_a_file_and_refuse_bad_entries(tmp_path):
    f = tmp_path / "keys"
    f.write_text("# the platform team\nplatform:platform-key-000000\n\n")
    keys = ApiKeys.load(f"team-a:{A}, {B}", str(f))
    assert set(keys.keys) == {"team-a", "key-2", "platform"}
    assert keys.identify(f"Bearer {B}") == "key-2"
    assert keys.identify("bearer platform-key-000000") == "platform"
    for header in (None, "", "Bearer ", f"Basic {A}", "Bearer not-a-key-at-all-xx"):
        with pytest.raises(Unauthorized):
            keys.identify(header)
    with pytest.raises(KeyConfigError, match="at least 16 characters"):
        ApiKeys.load("team-a:short", None)
    with pytest.raises(KeyConfigError, match="used twice"):
        ApiKeys.load(f"x:{A},x:{B}", None)
    with pytest.raises(KeyConfigError, match="RSTAR_API_KEYS_FILE"):
        ApiKeys.load(None, str(tmp_path / "missing"))
    assert ApiKeys.load(None, None).identify(None) == "anonymous"


async def test_a_freed_slot_goes_to_the_keys_in_turn_not_first_come():
    slots = FairSlots(1)
    await slots.acquire("a")
    order: list[str] = []

    async def wait(key: str, tag: str) -> None:
        await slots.acquire(key)
        order.append(tag)

    tasks = []
    for tag in ("a2", "a3", "a4"):
        tasks.append(asyncio.create_task(wait("a", tag)))
        await asyncio.sleep(0)
    tasks.append(asyncio.create_task(wait("b", "b1")))
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(wait("c", "c1"))
    await asyncio.sleep(0)
    cancelled.cancel()  # a waiter that gives up leaves the queue
    await asyncio.sleep(0)
    for _ in range(4):
        slots.release()
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == ["a2", "b1", "a3", "a4"]  # a FIFO semaphore: a2, a3, a4, b1
    slots.release()
    assert slots.busy == 0 and slots.waiting == 0


def test_key_limits_count_in_flight_and_the_last_minute():
    limits = KeyLimits(max_in_flight=2, per_minute=3)
    limits.enter("a")
    limits.enter("a")
    why, wait = limits.refusal("a")
    assert "2 searches in flight" in why and wait >= 1
    assert limits.refusal("b") is None
    limits.leave("a")
    assert limits.refusal("a") is None
    limits.enter("a")
    limits.leave("a")
    limits.leave("a")
    why, wait = limits.refusal("a")  # three requests this minute, none in flight
    assert "3 requests in the last minute" in why and 0 < wait <= 60


# --------------------------------------------------------------------------- the live app


@pytest.fixture
async def tenants(sandbox):
    policy = ScriptedPolicy(default=endless, delay_s=0.2)
    svc = scripted_service(
        sandbox,
        policy,
        cache_max_entries=0,
        api_keys=KEYS,
        key_max_in_flight=1,
        key_requests_per_minute=4,
        max_body_bytes=16384,
    )
    async with serving(svc) as url:
        yield svc, url


async def test_keys_guard_the_search_routes_in_each_apis_own_error_shape(tenants, caplog):
    _, url = tenants
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        r = await http.post("/solve", json=QUICK)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json() == {"detail": "missing API key: send it as 'Authorization: Bearer <key>'"}
        r = await http.post("/solve", json={"not": "a request"}, headers=bearer("wrong" * 5))
        assert r.status_code == 401 and r.json() == {"detail": "unknown API key"}  # before parsing
        chat = {"model": "rstar-mcts", "messages": [{"role": "user", "content": "1+1?"}]}
        r = await http.post("/v1/chat/completions", json=chat, headers=bearer("wrong" * 5))
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
        assert (await http.get("/v1/models")).status_code == 401
        for open_route in ("/healthz", "/readyz", "/metrics"):
            assert (await http.get(open_route)).status_code == 200, open_route
        r = await http.post("/solve", json=QUICK, headers=bearer(A))
        assert r.status_code == 200, r.text
        metrics = (await http.get("/metrics")).text
    assert 'rstar_key_searches_total{key="team-a",outcome="ok"} 1.0' in metrics
    for secret in (A, B):
        assert secret not in metrics and secret not in caplog.text


async def test_the_openai_sdk_and_the_rstar_client_pass_the_key(tenants, monkeypatch):
    import openai

    svc, url = tenants

    def served(key: str) -> float:
        return metric(svc, f'rstar_key_searches_total{{key="{key}",outcome="ok"}}')

    ok = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=B)
    models = await ok.models.list()
    assert any(m.id == "rstar-mcts" for m in models.data)
    with pytest.raises(openai.AuthenticationError):
        await openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="wrong" * 5).models.list()
    budget = {"rollouts": 2, "time_limit_s": 1}
    async with AsyncRstarClient(url, api_key=A) as client:
        res = await client.solve("Count.", budget=budget)
    assert res.usage.policy_calls > 0 and res.stopped_by in ("rollouts", "time_limit_s")
    assert (served("team-a"), served("team-b")) == (1, 0)  # searched as the key's owner
    monkeypatch.setenv("RSTAR_API_KEY", B)
    async with AsyncRstarClient(url) as client:
        res = await client.solve("Count.", budget=budget)
    assert res.usage.policy_calls > 0
    assert (served("team-a"), served("team-b")) == (1, 1)  # the key from the environment
    monkeypatch.delenv("RSTAR_API_KEY")
    async with AsyncRstarClient(url) as client:
        with pytest.raises(RstarError) as e:
            await client.solve("Count.")
    assert e.value.status == 401


async def test_a_key_over_its_limits_gets_429_and_the_other_key_is_served(tenants):
    svc, url = tenants
    long = {"problem": "Count.", "budget": {"rollouts": 64, "time_limit_s": 30}}
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        first = asyncio.create_task(http.post("/solve", json=long, headers=bearer(A)))
        await eventually(lambda: svc.key_limits.in_flight["team-a"] == 1)
        r = await http.post("/solve", json=QUICK, headers=bearer(A))
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert "RSTAR_KEY_MAX_IN_FLIGHT" in r.json()["detail"]
        chat = {
            "model": "rstar-mcts",
            "messages": [{"role": "user", "content": "1+1?"}],
            "stream": True,
        }
        r = await http.post("/v1/chat/completions", json=chat, headers=bearer(A))
        assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_exceeded"
        # the other key is not held up by the first key's search
        r = await http.post("/solve", json=QUICK, headers=bearer(B))
        assert r.status_code == 200, r.text
        first.cancel()
        await eventually(lambda: svc.key_limits.in_flight["team-a"] == 0)
        # four requests a minute: team-b has sent one; three more pass, the fifth is refused
        for _ in range(3):
            assert (await http.post("/solve", json=QUICK, headers=bearer(B))).status_code == 200
        r = await http.post("/solve", json=QUICK, headers=bearer(B))
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
        assert "RSTAR_KEY_REQUESTS_PER_MINUTE" in r.json()["detail"]
        metrics = (await http.get("/metrics")).text
    assert 'rstar_key_rejections_total{key="team-a"} 2.0' in metrics
    assert 'rstar_key_rejections_total{key="team-b"} 1.0' in metrics


async def test_large_bodies_get_413_before_parsing_and_long_chats_a_clear_error(tenants):
    _, url = tenants
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=bearer(A)) as http:
        r = await http.post("/solve", json={"problem": "x" * 20000})
        assert r.status_code == 413 and "RSTAR_MAX_BODY_BYTES" in r.json()["detail"]

        async def chunks():
            for _ in range(20):
                yield b" " * 1000  # no Content-Length: counted as it arrives

        r = await http.post(
            "/solve", content=chunks(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 413
        chat = {"model": "rstar-mcts", "messages": [{"role": "user", "content": "x" * 20000}]}
        r = await http.post("/v1/chat/completions", json=chat)
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        many = {"model": "rstar-mcts", "messages": [{"role": "user", "content": "1"}] * 300}
        r = await http.post("/v1/chat/completions", json=many)
    # 300 short messages fit in the bytes but not in the message count (256)
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"], r.text


async def test_metrics_can_require_a_key(sandbox):
    svc = scripted_service(
        sandbox, ScriptedPolicy(default=endless), api_keys=KEYS, metrics_require_key=True
    )
    async with serving(svc) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/metrics", headers=bearer(A))).status_code == 200
        assert (await http.get("/healthz")).status_code == 200
