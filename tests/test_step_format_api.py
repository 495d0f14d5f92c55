"""The step format through the HTTP API, on scripted policies and the real sandbox: `/solve`'s
`step_format` and the OpenAI route's (an extra body field) run every algorithm on plain steps,
with and without a reward model; the server's default is the model's (RSTAR_STEP_FORMAT); an
unknown format is refused naming the field."""

import httpx
import pytest

from models import ModelSettings
from search import ALGORITHMS
from server.app import create_app
from tests.support.scripted import EitherFormat, ScriptedReward, TextScriptedPolicy, text_five
from tests.support.service import scripted_service

SMALL = {"cache_max_entries": 0, "search": {"candidates": 2, "max_depth": 4}}


async def client_for(svc) -> httpx.AsyncClient:
    app = create_app(svc, manage_service=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


@pytest.mark.parametrize("reward", [False, True], ids=["no PRM", "PRM"])
@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
async def test_solve_runs_every_algorithm_on_plain_steps(algorithm, reward, sandbox):
    prm = ScriptedReward({"boxed": 0.5}, default=0.1) if reward else None
    svc = scripted_service(sandbox, TextScriptedPolicy(default=text_five), reward=prm, **SMALL)
    body = {
        "problem": "What is 2+3?",
        "algorithm": algorithm,
        "step_format": "text",
        "budget": {"rollouts": 2},
        "answer": "5",
    }
    async with await client_for(svc) as c:
        r = await c.post("/solve", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["answer"] == "5" and out["correct"] is True and out["step_format"] == "text"
    assert [s["reasoning"] for s in out["steps"]][-1] == "So the answer is $\\boxed{5}$."
    assert all(s["code"] == "" for s in out["steps"])
    uses_scores = algorithm != "self_consistency"  # a vote never asks the reward model
    assert out["reward_source"] == ("reward_model" if reward and uses_scores else "agreement")
    if reward and uses_scores:
        assert {q.step_format for q in prm.requests} == {"text"}
        assert out["score"] == pytest.approx(0.5)


async def test_the_servers_default_is_the_models_and_a_request_may_ask_for_the_other(sandbox):
    svc = scripted_service(
        sandbox, EitherFormat(), model_settings=ModelSettings(step_format="text"), **SMALL
    )
    async with await client_for(svc) as c:
        default = (await c.post("/solve", json={"problem": "What is 2+3?"})).json()
        code = await c.post("/solve", json={"problem": "x", "step_format": "code"})
    assert default["step_format"] == "text" and default["answer"] == "5"
    assert code.json()["step_format"] == "code" and code.json()["answer"] == "30"


async def test_an_unknown_step_format_is_a_422_naming_the_field(sandbox):
    svc = scripted_service(sandbox, TextScriptedPolicy(default=text_five), **SMALL)
    async with await client_for(svc) as c:
        r = await c.post("/solve", json={"problem": "x", "step_format": "prose"})
        chat = await c.post(
            "/v1/chat/completions",
            json={
                "model": "rstar-greedy",
                "messages": [{"role": "user", "content": "x"}],
                "step_format": "prose",
            },
        )
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "step_format"] and "'code' or 'text'" in err["msg"]
    # the OpenAI route answers a bad body in OpenAI's shape: 400, the field as `param`
    assert chat.status_code == 400 and chat.json()["error"]["param"] == "step_format"


@pytest.mark.parametrize("reward", [False, True], ids=["no PRM", "PRM"])
@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
async def test_the_openai_route_takes_the_step_format_in_extra_body(algorithm, reward, sandbox):
    import openai

    prm = ScriptedReward(default=0.2) if reward else None
    svc = scripted_service(sandbox, TextScriptedPolicy(default=text_five), reward=prm, **SMALL)
    app = create_app(svc, manage_service=False)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    client = openai.AsyncOpenAI(base_url="http://t/v1", api_key="unused", http_client=http)
    resp = await client.chat.completions.create(
        model=f"rstar-{algorithm}",
        messages=[{"role": "user", "content": "What is 2+3?"}],
        extra_body={"step_format": "text", "budget": {"rollouts": 2}},
    )
    await http.aclose()
    content = resp.choices[0].message.content
    assert resp.model_extra["rstar"]["step_format"] == "text"
    assert resp.model_extra["rstar"]["answer"] == "5"
    assert content.startswith("**Step 1.** We add 2 and 3: 2 + 3 = 5.\n")
    assert "```python" not in content  # plain steps have no code to show
    assert content.endswith("The answer is $\\boxed{5}$.")
