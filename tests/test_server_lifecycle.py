"""A request's life on a real uvicorn server: cancelled when its client disconnects (plain and
streamed), a deadline that also covers time in the queue, a search past its deadline (504) or
failing (500, and the stream's `error` event), request ids in structured logs, and `rstar solve
--url` against it (the problem from stdin, the tree as a page).

The policy is the scripted test double with a delay (these tests are about the server, not
the model); the sandbox is the real nsjail pool.
"""

import asyncio
import io
import json
import logging
import re
import sys

import httpx
import pytest

from server.app import create_app
from server.logs import configure_logging
from tests.support.cli import page_result
from tests.support.scripted import ScriptedPolicy, endless, finishing
from tests.support.service import eventually, metric, scripted_service, serving


@pytest.fixture
async def live(sandbox):
    """(service, base URL, policy) of a live server whose searches never finish."""
    policy = ScriptedPolicy(default=endless, delay_s=0.3)
    svc = scripted_service(sandbox, policy, cache_max_entries=0)
    async with serving(svc) as url:
        yield svc, url, policy


BODY = {"problem": "Count forever.", "budget": {"rollouts": 64, "time_limit_s": 120}}


async def test_a_client_that_disconnects_cancels_its_search(live):
    svc, url, policy = live
    async with httpx.AsyncClient(base_url=url) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.post("/solve", json=BODY, timeout=httpx.Timeout(5, read=1.5))
    await eventually(
        lambda: metric(svc, 'rstar_searches_cancelled_total{reason="client_disconnect"}') == 1
    )
    await eventually(lambda: metric(svc, "rstar_searches_running") == 0)
    calls = len(policy.calls)
    await asyncio.sleep(1.0)
    assert len(policy.calls) == calls  # the search stopped generating
    assert metric(svc, 'rstar_requests_total{algorithm="mcts",status="499"}') == 1


async def test_a_client_that_leaves_a_stream_cancels_its_search(live):
    svc, url, policy = live
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        headers = {"accept": "text/event-stream"}
        async with c.stream("POST", "/solve", json=BODY, headers=headers) as r:
            async for line in r.aiter_lines():
                if line.startswith("event: progress"):
                    break  # one progress event, then hang up
    await eventually(
        lambda: metric(svc, 'rstar_searches_cancelled_total{reason="client_disconnect"}') == 1
    )
    await eventually(lambda: metric(svc, "rstar_searches_running") == 0)
    calls = len(policy.calls)
    await asyncio.sleep(1.0)
    assert len(policy.calls) == calls


async def test_the_deadline_counts_time_in_the_queue(sandbox):
    policy = ScriptedPolicy(default=endless, delay_s=0.3)
    svc = scripted_service(sandbox, policy, max_concurrent=1, max_queue=4, retry_after_s=7)
    app = create_app(svc, manage_service=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        long = {"problem": "Count forever.", "budget": {"rollouts": 64, "time_limit_s": 4}}
        first = asyncio.create_task(c.post("/solve", json=long))
        await eventually(lambda: metric(svc, "rstar_searches_running") == 1)
        quick = {"problem": "Count again.", "budget": {"time_limit_s": 0.5}}
        r = await c.post("/solve", json=quick)
        assert r.status_code == 503 and r.headers["Retry-After"] == "7"
        assert "time limit" in r.json()["detail"]
        # refused at its own time limit, while the search holding the slot still runs
        assert not first.done()
        done = await first  # the running search stops at its own time limit, with an answer
        assert done.status_code == 200 and done.json()["stopped_by"] == "time_limit_s"
    assert metric(svc, 'rstar_requests_total{algorithm="mcts",status="503"}') == 1


class Unstoppable(ScriptedPolicy):
    """An engine whose call outlives the search's own time limit: it ignores the first
    cancellation (the search's), so only the service's deadline ends the request."""

    async def generate(self, requests):
        self.calls.append(list(requests))
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled += 1
            await asyncio.sleep(60)  # cancelled again by the service's deadline
        raise AssertionError("never reached")


async def test_a_search_past_its_deadline_is_a_504_and_counted(sandbox):
    policy = Unstoppable()
    svc = scripted_service(sandbox, policy, cache_max_entries=0, deadline_grace_s=0.5)
    app = create_app(svc, manage_service=False)
    budget = {"rollouts": 4, "time_limit_s": 0.5}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.post("/solve", json={"problem": "Count.", "budget": budget})
        assert r.status_code == 504, r.text
        assert r.json() == {"detail": "the search overran its deadline (0.5s + 0.5s grace)"}
        chat = {
            "model": "rstar-greedy",
            "messages": [{"role": "user", "content": "Count."}],
            "budget": budget,
        }
        r = await c.post("/v1/chat/completions", json=chat)
        assert r.status_code == 504 and r.json()["error"]["type"] == "timeout", r.text
    assert policy.cancelled == 2  # the search's own time limit fired first, in vain
    assert metric(svc, 'rstar_searches_cancelled_total{reason="deadline"}') == 2
    assert metric(svc, 'rstar_requests_total{algorithm="mcts",status="504"}') == 1
    assert metric(svc, "rstar_searches_running") == 0  # the slot is free again


class Exploding(ScriptedPolicy):
    """An engine that fails on every call."""

    async def generate(self, requests):
        self.calls.append(list(requests))
        raise RuntimeError("engine exploded")


async def test_a_failing_search_is_a_500_saying_why_and_a_streamed_error_event(sandbox, caplog):
    svc = scripted_service(sandbox, Exploding(), cache_max_entries=0)
    app = create_app(svc, manage_service=False)
    why = "the search failed: RuntimeError: engine exploded"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.post("/solve", json={"problem": "Count."})
        assert r.status_code == 500 and r.json() == {"detail": why}, r.text
        headers = {"accept": "text/event-stream"}
        async with c.stream("POST", "/solve", json={"problem": "Count."}, headers=headers) as s:
            assert s.status_code == 200  # the stream had started: the error is its last event
            text = (await s.aread()).decode()
        chat = {"model": "rstar-mcts", "messages": [{"role": "user", "content": "Count."}]}
        r = await c.post("/v1/chat/completions", json=chat)
        assert r.status_code == 500 and r.json()["error"]["message"] == why, r.text
        assert r.json()["error"]["type"] == "server_error"
    events = re.findall(r"event: (\w+)\r?\ndata: (.*)", text)
    assert events[-1][0] == "error" and [e for e, _ in events].count("result") == 0
    assert json.loads(events[-1][1]) == {"status": 500, "detail": why}
    assert metric(svc, 'rstar_requests_total{algorithm="mcts",status="500"}') == 2
    assert "engine exploded" in caplog.text  # logged with its traceback for the operator
    assert metric(svc, "rstar_searches_running") == 0


async def test_requests_carry_an_id_into_json_logs_and_the_response(sandbox):
    policy = ScriptedPolicy(default=endless)
    svc = scripted_service(sandbox, policy)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buf = io.StringIO()
    try:
        configure_logging("json", "INFO")
        root.handlers[0].setStream(buf)  # type: ignore[attr-defined]
        app = create_app(svc, manage_service=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            body = {"problem": "Count.", "algorithm": "greedy", "budget": {"max_tokens": 50}}
            r = await c.post("/solve", json=body, headers={"x-request-id": "req-42"})
            other = await c.post("/solve", json={"problem": ""})
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-42"
    assert len(other.headers["x-request-id"]) == 32  # made up when not given
    records = [json.loads(line) for line in buf.getvalue().splitlines()]
    access = [x for x in records if x["logger"] == "rstar.access"]
    assert {"request_id": "req-42", "status": 200, "path": "/solve", "method": "POST"}.items() <= (
        access[0].items()
    )
    assert access[1]["status"] == 422 and access[1]["request_id"] == other.headers["x-request-id"]


async def test_rstar_solve_url_streams_from_a_live_server(sandbox, capsys, monkeypatch, tmp_path):
    from clients.cli import main

    svc = scripted_service(sandbox, ScriptedPolicy(default=finishing))
    async with serving(svc) as url:
        args = ["solve", "--url", url, "--rollouts", "3", "--json", "--answer", "30", "Count."]
        rc = await asyncio.to_thread(main, args)
        out = json.loads(capsys.readouterr().out)
        assert rc == 0 and out["answer"] in ("30", "31") and out["usage"]["rollouts"] == 3
        assert out["correct"] == (out["answer"] == "30")
        # the problem from stdin (`-`), and the tree as a self-contained page
        monkeypatch.setattr(sys, "stdin", io.StringIO("Count from stdin.\n"))
        page = tmp_path / "tree.html"
        args = ["solve", "--url", url, "--rollouts", "2", "--json", "--html", str(page), "-"]
        rc = await asyncio.to_thread(main, args)
        captured = capsys.readouterr()
        assert rc == 0, captured.err
        assert f"the search tree is in {page}" in captured.err
        shown = page_result(page)
        assert shown["tree"]["problem"] == "Count from stdin.\n"
        assert shown["answer"] == json.loads(captured.out)["answer"] in ("30", "31")
        rc = await asyncio.to_thread(main, ["solve", "--url", url, "--rollouts", "999", "x"])
        assert rc == 2 and "RSTAR_MAX_ROLLOUTS" in capsys.readouterr().err
    rc = await asyncio.to_thread(main, ["solve", "--url", url, "x"])  # the server is gone
    assert rc == 2 and "cannot reach" in capsys.readouterr().err
