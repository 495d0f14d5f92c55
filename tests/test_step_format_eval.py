"""The step format in `rstar eval` and `rstar solve`: code and text runs of the same algorithm
and budget are runs of their own (keys, records, resume, report, table), and the command lines
refuse a format, or a prompt style for it, that cannot work before anything starts."""

import asyncio
import io
import json

import pytest
from rich.console import Console

import evaluation as ev
from clients.cli import main
from evaluation.records import read_results
from search import Components, SearchConfig
from tests.support.scripted import EitherFormat
from tests.support.service import scripted_service, serving

ROWS = [
    {"id": "p1", "problem": "What is 2+3?", "answer": "5"},
    {"id": "p2", "problem": "What is 6*5?", "answer": "30"},
]


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "two.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_the_plan_keeps_formats_apart():
    keys = ev.plan(["greedy", "mcts"], [4], ["code", "text"])
    assert [k.label for k in keys] == ["greedy@1", "greedy/text@1", "mcts@4", "mcts/text@4"]
    assert keys[2].record_key("p1") != keys[3].record_key("p1")
    assert ev.plan(["mcts"], [4]) == [ev.RunKey("mcts", 4)]  # code unless told
    with pytest.raises(ValueError, match="unknown step format 'prose'"):
        ev.plan(["mcts"], [4], ["prose"])


async def test_an_eval_runs_both_formats_side_by_side_and_resumes(sandbox, data, tmp_path):
    policy = EitherFormat()
    config = SearchConfig(candidates=2, max_depth=4)
    text = config.model_copy(update={"step_format": "text", "prompt_style": "system"})
    solver = ev.InProcessSolver(Components(policy, sandbox), config, configs={"text": text})
    problems = ev.load_problems(data)
    keys = ev.plan(["self_consistency"], [2], ["code", "text"])
    report = await ev.evaluate(problems, keys, solver, tmp_path)
    code_run, text_run = report["runs"]
    assert (code_run["step_format"], text_run["step_format"]) == ("code", "text")
    # code steps answer 30 (right for p2), text steps 5 (right for p1)
    assert [r["answer"] for r in code_run["records"]] == ["30", "30"]
    assert [r["answer"] for r in text_run["records"]] == ["5", "5"]
    assert code_run["accuracy"] == text_run["accuracy"] == 0.5
    lines = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(x["step_format"] for x in lines) == ["code", "code", "text", "text"]
    assert len(read_results(tmp_path / "results.jsonl")) == 4
    calls = len(policy.formats)
    await ev.evaluate(problems, keys, solver, tmp_path, resume=True)  # nothing searched again
    assert len(policy.formats) == calls
    table = Console(file=io.StringIO(), width=120)
    table.print(ev.table(report))
    assert "self-consistency (text steps)" in table.file.getvalue()


async def test_without_a_config_for_the_format_the_solver_derives_one(sandbox, data):
    policy = EitherFormat()
    solver = ev.InProcessSolver(Components(policy, sandbox), SearchConfig(prompt_style="few_shot"))
    out = await solver.solve("What is 2+3?", "greedy", 1, step_format="text")
    assert out.answer == "5" and policy.formats == ["text", "text"]


def test_records_written_before_step_formats_read_back_as_code(tmp_path):
    rec = {"algorithm": "mcts", "budget": 4, "id": "p1", "answer": "3", "correct": True}
    (tmp_path / "results.jsonl").write_text(json.dumps({**rec, "tokens": 9, "seconds": 1.0}))
    (key,) = read_results(tmp_path / "results.jsonl")
    assert key == ev.RunKey("mcts", 4, step_format="code").record_key("p1")


def test_the_command_lines_refuse_what_cannot_work(data, tmp_path, capsys):
    assert main(["eval", "--data", str(data), "--step-format", "code,prose"]) == 2
    assert "unknown step format 'prose'" in capsys.readouterr().err
    remote = ["--engine", "remote", "--policy-url", "http://127.0.0.1:9/v1"]
    args = ["eval", "--data", str(data), "--out", str(tmp_path / "o"), *remote]
    assert main([*args, "--step-format", "code,text", "--prompt-style", "chat"]) == 2
    err = capsys.readouterr().err
    assert "--prompt-style chat: its worked examples are code steps" in err
    assert "--step-format text" in err
    with pytest.raises(SystemExit) as exit_:
        main(["solve", "x", "--step-format", "prose"])
    assert exit_.value.code == 2 and "invalid choice: 'prose'" in capsys.readouterr().err
    assert main(["solve", "x", "--step-format", "text", "--prompt-style", "few_shot", *remote]) == 2
    err = capsys.readouterr().err
    assert "--prompt-style few_shot: its worked examples are code steps" in err


async def test_rstar_eval_and_solve_against_a_live_server_send_the_format(
    sandbox, data, tmp_path, capsys
):
    """Against a server whose model writes code steps by default, the command lines ask for
    what they were given: both formats of an eval are searched as such, and so is a solve."""
    svc = scripted_service(sandbox, EitherFormat(), cache_max_entries=0)
    out = tmp_path / "remote"
    async with serving(svc) as url:
        args = ["eval", "--url", url, "--data", str(data), "--algorithms", "greedy"]
        args += ["--step-format", "code,text", "--out", str(out)]
        rc = await asyncio.to_thread(main, args)
        assert rc == 0, capsys.readouterr().err
        report = json.loads((out / "report.json").read_text())
        runs = {r["step_format"]: [x["answer"] for x in r["records"]] for r in report["runs"]}
        assert runs == {"code": ["30", "30"], "text": ["5", "5"]}
        assert report["config"]["step_formats"] == ["code", "text"]
        capsys.readouterr()
        solve = ["solve", "--url", url, "--json", "--algorithm", "greedy", "What is 2+3?"]
        rc = await asyncio.to_thread(main, [*solve, "--step-format", "text"])
        shown = json.loads(capsys.readouterr().out)
        assert rc == 0 and shown["step_format"] == "text" and shown["answer"] == "5"
