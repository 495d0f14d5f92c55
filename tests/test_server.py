"""The HTTP API against the real app (ASGI transport): the tiny model (SmolLM2-135M, the suite's
model; not the default) on transformers, and the real nsjail sandbox."""

import asyncio
import json

import httpx
import pytest

from models import ModelSettings
from sandbox import SandboxSettings
from server.app import create_app
from server.service import SolverService
from server.settings import ServerSettings
from tests.support.service import eventually, metric


@pytest.fixture(scope="module")
async def service():
    svc = SolverService(
        ServerSettings(
            max_concurrent=1,
            max_queue=0,
            max_rollouts=16,
            max_problem_chars=200,
            search={"candidates": 2, "max_depth": 4, "parallel_rollouts": 4},
            # every search ends within a minute, however slow the machine (CI's took >120 s
            # for 3 MCTS rollouts); the behaviour under test does not need more
            default_time_limit_s=60.0,
        ),  # small trees: 2 CPU cores
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
        "cache": "memory: ok",
    }


async def test_readiness_is_503_before_start():
    app = create_app(SolverService(), manage_service=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/readyz")
    assert r.status_code == 503 and r.json()["status"] == "starting"


@pytest.mark.parametrize("algorithm", ["greedy", "best_of_n", "self_consistency", "mcts"])
async def test_solve_returns_answer_trajectory_usage_and_models(client, grader, algorithm):
    body = {
        "problem": "What is 2+3?",
        "algorithm": algorithm,
        "answer": "5",
        "return_tree": True,
        "budget": {"rollouts": 2},
        "cache": False,
    }
    r = await client.post("/solve", json=body)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["algorithm"] == algorithm and body["reward_source"] == "agreement"
    assert body["usage"]["policy_calls"] > 0 and body["usage"]["tokens"] > 0
    assert body["usage"]["prompt_tokens"] > body["usage"]["tokens"]  # few-shot prompts are long
    assert body["models"]["policy"] == "tiny" and body["models"]["reward_model"] is None
    assert body["models"]["versions"]["policy"].startswith("SmolLM2-135M-Instruct")
    assert body["tree"]["problem"] == "What is 2+3?" and len(body["tree"]["nodes"]) > 1
    # graded against the given answer when there is one to grade
    graded = None if body["answer"] is None else await grader.aequal("5", body["answer"])
    assert body["correct"] == graded
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


async def test_a_full_queue_answers_429_with_retry_after(client, service):
    slow = asyncio.create_task(
        client.post("/solve", json={"problem": "What is 7*8?", "algorithm": "greedy"})
    )
    await eventually(lambda: metric(service, "rstar_searches_running") == 1)  # the only slot
    r = await client.post("/solve", json={"problem": "What is 1+1?", "algorithm": "greedy"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert (await slow).status_code == 200


def test_python_m_server_serves_on_the_given_port(tmp_path):
    import os
    import subprocess
    import sys
    import time

    from tests.support.vllm_server import free_port

    port = free_port()
    env = {
        **os.environ,
        "RSTAR_POLICY_ENGINE": "transformers",
        "RSTAR_SANDBOX_WORKERS": "1",
        "RSTAR_SANDBOX_BASE_UID": "61500",
        "RSTAR_REMOTE_API_KEY": "s3cret",
    }
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
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
        r = httpx.post(
            f"{url}/solve", json={"problem": "What is 2+2?", "algorithm": "greedy"}, timeout=120
        )
        assert r.status_code == 200 and "usage" in r.json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text()
    assert "server settings" in text and "s3cret" not in text  # printed, secrets redacted


async def test_metrics_count_requests_search_work_and_sandbox_runs(client):
    def value(text, name):
        line = next(ln for ln in text.splitlines() if ln.startswith(name + " "))
        return float(line.split()[-1])

    work = ("rstar_generated_tokens_total", "rstar_policy_calls_total", "rstar_sandbox_runs_total")
    before = (await client.get("/metrics")).text
    r = await client.post(
        "/solve", json={"problem": "What is 3+4?", "algorithm": "greedy", "cache": False}
    )
    await client.post("/solve", json={"problem": ""})
    text = (await client.get("/metrics")).text
    assert 'rstar_requests_total{algorithm="greedy",status="200"}' in text
    assert 'rstar_requests_total{algorithm="invalid",status="422"}' in text
    assert 'rstar_request_duration_seconds_count{algorithm="greedy"}' in text
    # the counters grew by what the search says it spent, sandbox executions included
    usage = r.json()["usage"]
    grown = [value(text, name) - value(before, name) for name in work]
    assert grown == [usage["tokens"], usage["policy_calls"], usage["sandbox_runs"]]
    assert usage["tokens"] > 0 and usage["policy_calls"] > 0
    assert "rstar_queue_depth 0.0" in text and "rstar_searches_running 0.0" in text


# --- streaming, the OpenAI SDK, the Python client (the tiny model) ---------------------------


def sse_events(text):
    """(event, data) pairs of a text/event-stream body."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        event = next((ln[7:] for ln in lines if ln.startswith("event: ")), None)
        data = "\n".join(ln[6:] for ln in lines if ln.startswith("data: "))
        if event:
            out.append((event, json.loads(data)))
    return out


async def test_solve_streams_progress_then_the_result(client):
    body = {
        "problem": "What is 6*7?",
        "algorithm": "mcts",
        "budget": {"rollouts": 3},
        "cache": False,
    }
    headers = {"accept": "text/event-stream"}
    async with client.stream("POST", "/solve", json=body, headers=headers) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = (await r.aread()).decode()
    events = sse_events(text)
    kinds = [e for e, _ in events]
    assert kinds[-1] == "result" and kinds.count("result") == 1 and "progress" in kinds
    progress = [d for e, d in events if e == "progress"]
    assert [p["rollouts"] for p in progress] == sorted(p["rollouts"] for p in progress)
    assert {"rollouts", "rollouts_budget", "best_answer", "best_score", "tokens"} <= set(
        progress[0]
    )
    result = events[-1][1]
    assert result["usage"]["rollouts"] == progress[-1]["rollouts"] and "steps" in result


async def test_a_streamed_solve_still_gets_422_for_a_bad_budget(client):
    body = {"problem": "x", "budget": {"rollouts": 10_000}}
    r = await client.post("/solve", json=body, headers={"accept": "text/event-stream"})
    assert r.status_code == 422 and "RSTAR_MAX_ROLLOUTS" in r.text


@pytest.fixture
def openai_client(service):
    import openai

    app = create_app(service, manage_service=False)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    return openai.AsyncOpenAI(base_url="http://t/v1", api_key="unused", http_client=http)


async def test_openai_sdk_lists_models_and_completes_a_chat(openai_client):
    models = [m.id async for m in openai_client.models.list()]
    assert models == [
        "rstar-mcts",
        "rstar-best_of_n",
        "rstar-self_consistency",
        "rstar-greedy",
        "rstar-beam_search",
        "rstar-particle_filtering",
    ]
    resp = await openai_client.chat.completions.create(
        model="rstar-best_of_n",
        messages=[
            {"role": "system", "content": "Be careful."},
            {"role": "user", "content": "What is 9+10?"},
        ],
        reasoning_effort="low",
        extra_body={"cache": False},
    )
    choice = resp.choices[0]
    assert resp.object == "chat.completion" and choice.message.role == "assistant"
    extra = resp.model_extra["rstar"]
    # an answer stops the completion and ends the message; no answer is a cut-off one
    answer = extra["answer"]
    assert choice.finish_reason == ("stop" if answer is not None else "length")
    last = "No answer was found within the budget."
    assert choice.message.content.endswith(
        last if answer is None else f"The answer is $\\boxed{{{answer}}}$."
    )
    assert extra["usage"]["rollouts"] <= 4  # low effort = 4 rollouts
    u = resp.usage
    assert u.completion_tokens == extra["usage"]["tokens"] > 0 and u.prompt_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


async def test_openai_sdk_streams_progress_then_the_answer(openai_client):
    stream = await openai_client.chat.completions.create(
        model="rstar-best_of_n",
        messages=[{"role": "user", "content": "What is 4*4?"}],
        extra_body={"budget": {"rollouts": 2}, "cache": False},
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    thinking = [
        c.choices[0].delta.model_extra.get("reasoning_content") for c in chunks if c.choices
    ]
    assert any(t and t.startswith("rollout ") for t in thinking)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "answer" in content.lower()
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == (["stop"] if "The answer is $\\boxed{" in content else ["length"])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize(
    ("kwargs", "status", "says"),
    [
        ({"model": "gpt-4o"}, 404, "rstar-mcts"),
        ({"messages": [{"role": "system", "content": "only a system message"}]}, 400, "user"),
        ({"n": 2}, 400, "n"),
        ({"extra_body": {"budget": {"rollouts": 10_000}}}, 400, "RSTAR_MAX_ROLLOUTS"),
        ({"extra_body": {"colour": "blue"}}, 400, "colour"),
    ],
)
async def test_openai_errors_come_back_as_sdk_exceptions(openai_client, kwargs, status, says):
    import openai

    args = {"model": "rstar-greedy", "messages": [{"role": "user", "content": "1+1?"}], **kwargs}
    with pytest.raises(openai.APIStatusError) as exc:
        await openai_client.chat.completions.create(**args)
    assert exc.value.status_code == status and says in exc.value.message


async def test_async_client_solves_and_streams(service):
    from clients.client import AsyncRstarClient, RstarError
    from server.protocol import ProgressEvent, SolveResponse

    app = create_app(service, manage_service=False)
    async with AsyncRstarClient("http://t", transport=httpx.ASGITransport(app=app)) as c:
        assert (await c.ready()).status == "ok"
        res = await c.solve("What is 5+5?", algorithm="greedy", answer="10")
        assert isinstance(res, SolveResponse) and res.usage.tokens > 0
        events = [e async for e in c.stream("What is 5+5?", algorithm="greedy")]
        assert isinstance(events[-1], SolveResponse)
        assert all(isinstance(e, ProgressEvent) for e in events[:-1])
        with pytest.raises(RstarError) as exc:
            await c.solve("x" * 500)
        assert exc.value.status == 422 and "RSTAR_MAX_PROBLEM_CHARS" in str(exc.value)
