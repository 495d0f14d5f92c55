"""The HTTP API against the real app (ASGI transport), the default model on transformers and
the real nsjail sandbox."""

import asyncio

import httpx
import pytest

from models import ModelSettings
from sandbox import SandboxSettings
from server.app import create_app
from server.service import SolverService
from server.settings import ServerSettings


@pytest.fixture(scope="module")
async def service():
    svc = SolverService(
        ServerSettings(max_concurrent=1, max_queue=0, max_rollouts=16, max_problem_chars=200),
        ModelSettings(policy_engine="transformers"),
        SandboxSettings(workers=2, base_uid=61400),
    )
    await svc.start()
    yield svc
    await svc.close()


@pytest.fixture
async def client(service):
    app = create_app(service, manage_service=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


async def test_health_and_readiness(client):
    assert (await client.get("/healthz")).json() == {"status": "ok", "checks": {}}
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"] == {
        "sandbox": "ok",
        "policy": "ok",
        "reward_model": "none (answer agreement)",
    }


async def test_readiness_is_503_before_start():
    app = create_app(SolverService(), manage_service=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/readyz")
    assert r.status_code == 503 and r.json()["status"] == "starting"


async def test_solve_returns_answer_trajectory_usage_and_models(client):
    r = await client.post("/solve", json={"problem": "What is 2+3?", "algorithm": "greedy",
                                          "answer": "5", "return_tree": True})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["algorithm"] == "greedy" and body["reward_source"] == "agreement"
    assert body["usage"]["policy_calls"] > 0 and body["usage"]["tokens"] > 0
    assert body["models"] == {
        "policy": "default",
        "policy_engine": "transformers",
        "reward_model": None,
    }
    assert body["tree"]["problem"] == "What is 2+3?" and len(body["tree"]["nodes"]) > 1
    assert body["correct"] in (True, False, None)
    assert body["stopped_by"] in ("finished", "rollouts", "exhausted", "max_tokens", "time_limit_s")


@pytest.mark.parametrize(
    ("body", "loc", "says"),
    [
        ({"problem": ""}, ["body", "problem"], "at least 1 character"),
        ({"problem": "   "}, ["body", "problem"], "blank"),
        ({"problem": "x" * 201}, ["body", "problem"], "RSTAR_MAX_PROBLEM_CHARS"),
        (
            {"problem": "x", "budget": {"rollouts": -1}},
            ["body", "budget", "rollouts"],
            "greater than or equal to 1",
        ),
        (
            {"problem": "x", "budget": {"rollouts": 17}},
            ["body", "budget", "rollouts"],
            "RSTAR_MAX_ROLLOUTS",
        ),
        (
            {"problem": "x", "budget": {"time_limit_s": 1e9}},
            ["body", "budget", "time_limit_s"],
            "RSTAR_MAX_TIME_LIMIT_S",
        ),
        (
            {"problem": "x", "budget": {"rollouts": "many"}},
            ["body", "budget", "rollouts"],
            "integer",
        ),
        ({"problem": 42}, ["body", "problem"], "string"),
        ({"problem": "x", "algorithm": "beam"}, ["body", "algorithm"], "mcts"),
        ({"problem": "x", "temperature": 2}, ["body", "temperature"], "Extra inputs"),
        ({}, ["body", "problem"], "Field required"),
    ],
)
async def test_bad_bodies_get_a_422_naming_the_field(client, body, loc, says):
    r = await client.post("/solve", json=body)
    assert r.status_code == 422, r.text
    (err,) = [e for e in r.json()["detail"] if e["loc"] == loc]
    assert says in err["msg"]


async def test_not_json_is_a_422(client):
    r = await client.post(
        "/solve", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


async def test_a_full_queue_answers_429_with_retry_after(client):
    slow = asyncio.create_task(
        client.post("/solve", json={"problem": "What is 7*8?", "algorithm": "greedy"})
    )
    await asyncio.sleep(0.5)  # the first request holds the only slot
    r = await client.post("/solve", json={"problem": "What is 1+1?", "algorithm": "greedy"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert (await slow).status_code == 200


def test_python_m_server_serves_on_the_given_port(tmp_path):
    import os
    import subprocess
    import sys
    import time

    from tests.vllm_server import free_port

    port = free_port()
    env = {**os.environ, "RSTAR_POLICY_ENGINE": "transformers", "RSTAR_SANDBOX_WORKERS": "1",
           "RSTAR_SANDBOX_BASE_UID": "61500", "RSTAR_REMOTE_API_KEY": "s3cret"}  # fmt: skip
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "server", "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(1)
        r = httpx.post(f"{url}/solve", json={"problem": "What is 2+2?", "algorithm": "greedy"},
                       timeout=120)  # fmt: skip
        assert r.status_code == 200 and "usage" in r.json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text()
    assert "server settings" in text and "s3cret" not in text  # printed, secrets redacted


async def test_metrics_count_requests_search_work_and_sandbox_runs(client):
    await client.post("/solve", json={"problem": "What is 3+4?", "algorithm": "greedy"})
    await client.post("/solve", json={"problem": ""})
    text = (await client.get("/metrics")).text
    assert 'rstar_requests_total{algorithm="greedy",status="200"}' in text
    assert 'rstar_requests_total{algorithm="invalid",status="422"}' in text
    assert 'rstar_request_duration_seconds_count{algorithm="greedy"}' in text

    def value(name):
        line = next(ln for ln in text.splitlines() if ln.startswith(name + " "))
        return float(line.split()[-1])

    assert value("rstar_generated_tokens_total") > 0
    assert value("rstar_policy_calls_total") > 0
    assert value("rstar_sandbox_runs_total") >= 0
    assert "rstar_queue_depth 0.0" in text and "rstar_searches_running 0.0" in text
