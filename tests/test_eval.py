"""`rstar eval`: the problem loader (real data files, broken files), an in-process evaluation
with the scripted policy and the real nsjail sandbox (accuracy, report.json, results.jsonl, the
plot, resume), the same against a live server, one smoke run of the CLI on the tiny model
(SmolLM2-135M, not the default) on transformers, and the layering (no import from the round
trainer or the evaluation core up into clients/)."""

import ast
import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

import evaluation as ev
from clients.cli import main
from evaluation.records import read_results
from search import Components, SearchConfig
from search.grading import answers_equal
from tests.support.data import shared_data
from tests.support.scripted import ScriptedPolicy, ScriptedReward, thirty
from tests.support.service import eventually, scripted_service, serving

PNG = b"\x89PNG\r\n\x1a\n"
CONFIG = SearchConfig(candidates=2, max_depth=4, parallel_rollouts=2)
# Every search answers 30: the first two are right (the second through math-verify), the third
# is wrong, so every (algorithm, budget) scores 2/3.
ROWS = [
    {"id": "p1", "problem": "What is 6*5?", "answer": "30"},
    {"id": "p2", "question": "What is 60/2?", "answer": "\\frac{60}{2}"},
    {"id": "p3", "problem": "What is 3+4?", "answer": 7},
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def data(tmp_path):
    return write_jsonl(tmp_path / "tiny.jsonl", ROWS)


class Counting(ev.InProcessSolver):
    """Counts solves and the most in flight at once; fails on the problems in `fail`."""

    def __init__(self, *args, fail=(), **kw):
        super().__init__(*args, **kw)
        self.calls, self.in_flight, self.most, self.fail = [], 0, 0, set(fail)

    async def solve(
        self, problem, algorithm, rollouts, max_tokens=None, stop_when="budget", step_format="code"
    ):
        self.calls.append((problem, algorithm, rollouts, max_tokens, stop_when))
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            if problem in self.fail:
                raise RuntimeError("engine exploded")
            return await super().solve(
                problem, algorithm, rollouts, max_tokens, stop_when, step_format
            )
        finally:
            self.in_flight -= 1


def solver(sandbox, **kw):
    policy = ScriptedPolicy(default=thirty, delay_s=0.02)
    models = {"policy": "scripted", "versions": {"policy": "scripted-v1"}}
    return Counting(Components(policy, sandbox), CONFIG, models=models, **kw)


# --------------------------------------------------------------------------- loader


def test_the_loader_reads_the_shared_data_files():
    gsm = ev.load_problems(shared_data("gsm8k_test.jsonl"))
    assert len(gsm) == 1319 and gsm[0].id == "gsm8k-test-0" and gsm[0].answer == "18"
    assert "ducks" in gsm[0].problem and gsm[0].line == 1
    part = ev.load_problems(shared_data("gsm8k_test.jsonl"), offset=10, limit=5)
    assert [p.id for p in part] == [f"gsm8k-test-{i}" for i in range(10, 15)]
    math = ev.load_problems(shared_data("math500_test.jsonl"))
    assert len(math) == 500 and math[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"


def test_the_loader_takes_question_fields_numbers_and_gsm8k_solutions(tmp_path):
    f = write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {"question": "Q1", "answer": "She has 3 + 4 = 7 left.\n#### 7"},
            "",
            {"problem": "Q2", "answer": 12.5},
        ],
    )
    a, b = ev.load_problems(f)
    assert (a.id, a.problem, a.answer, a.line) == ("mine-0", "Q1", "7", 1)
    assert (b.id, b.answer, b.line) == ("mine-1", "12.5", 3)


def test_broken_files_are_clear_errors_naming_file_and_line(tmp_path):
    f = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"problem": "fine", "answer": "1"},
            "{not json",
            {"question": "no answer here"},
            {"answer": "2"},
            "[1, 2]",
            {"problem": "c", "answer": "  "},
            {"id": "x", "problem": "d", "answer": 3},
            {"id": "x", "problem": "e", "answer": 4},
        ],
    )
    with pytest.raises(ev.DataError) as e:
        ev.load_problems(f)
    msg = str(e.value)
    assert "6 unusable row(s)" in msg
    assert f"{f}:2: not valid JSON" in msg
    assert f"{f}:3: missing an 'answer' field" in msg
    assert f"{f}:4: missing a non-empty 'problem' (or 'question') string" in msg
    assert f"{f}:5: expected a JSON object, got list" in msg
    assert f"{f}:6: missing a usable 'answer'" in msg
    assert f"{f}:8: duplicate id 'x' (first on line 7)" in msg
    assert ":1:" not in msg and ":7:" not in msg
    with pytest.raises(ev.DataError, match="no problems in the file"):
        ev.load_problems(write_jsonl(tmp_path / "empty.jsonl", ["", " "]))
    with pytest.raises(ev.DataError, match="no such file"):
        ev.load_problems(tmp_path / "missing.jsonl")
    with pytest.raises(ev.DataError, match="none left after offset 5"):
        ev.load_problems(write_jsonl(tmp_path / "one.jsonl", ROWS[:1]), offset=5)


def test_the_cli_rejects_bad_input_before_starting_anything(tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"problem": "x"}])
    # --engine remote without a URL would fail at start-up: the data error comes first
    assert main(["eval", "--data", str(bad), "--engine", "remote"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: missing an 'answer' field" in err and "RSTAR_POLICY_URL" not in err
    good = write_jsonl(tmp_path / "good.jsonl", ROWS)
    assert main(["eval", "--data", str(good), "--algorithms", "greedy,beam"]) == 2
    assert "unknown algorithm 'beam'" in capsys.readouterr().err
    assert main(["eval", "--data", str(good), "--budgets", "4,x"]) == 2  # rollouts or 650tok
    assert "budget 'x': a positive rollout count" in capsys.readouterr().err
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text('{"algorithm": "greedy"}\n')
    args = ["eval", "--data", str(good), "--engine", "remote", "--out", str(out)]
    assert main(args) == 2
    assert "already holds results: pass --resume" in capsys.readouterr().err
    # a model path that is not a model: refused before an engine starts
    args = ["eval", "--data", str(good), "--engine", "transformers"]
    assert main([*args, "--model", str(tmp_path / "nope")]) == 2
    assert "--model" in (err := capsys.readouterr().err) and "no such directory" in err
    assert main([*args, "--ppm", str(out)]) == 2
    assert "--ppm" in (err := capsys.readouterr().err) and "not a model" in err


def test_the_plan_runs_greedy_once():
    keys = ev.plan(["greedy", "mcts", "best_of_n"], [8, 1, 8])
    assert [k.label for k in keys] == ["greedy@1", "mcts@1", "mcts@8", "best_of_n@1", "best_of_n@8"]
    with pytest.raises(ValueError, match="positive"):
        ev.plan(["mcts"], [0])


def test_a_token_budget_is_a_budget_of_its_own_with_rollouts_as_many_as_fit():
    keys = ev.plan(["greedy", "mcts"], ["650tok", 4, "1300t"])
    assert [k.label for k in keys] == ["greedy@1", "mcts@4", "mcts@650tok", "mcts@1300tok"]
    assert keys[2].budget == ev.TOKEN_BUDGET_ROLLOUTS and keys[2].tokens == 650
    for bad in ("0tok", "tok", "-3", "6.5"):
        with pytest.raises(ValueError, match="650tok"):
            ev.plan(["mcts"], [bad])


async def test_an_eval_at_a_token_budget_passes_it_to_every_search_and_resumes(
    sandbox, data, tmp_path
):
    problems = ev.load_problems(data)
    s = solver(sandbox)
    keys = ev.plan(["self_consistency"], [2, "100tok"])
    report = await ev.evaluate(problems, keys, s, tmp_path)
    assert sorted({c[2:4] for c in s.calls}) == [(2, None), (ev.TOKEN_BUDGET_ROLLOUTS, 100)]
    by_budget = {r["max_tokens"]: r for r in report["runs"]}
    assert by_budget[100]["n"] == by_budget[None]["n"] == 3
    assert all(rec["tokens"] <= 100 + 40 for rec in by_budget[100]["records"])
    calls = len(s.calls)
    await ev.evaluate(problems, keys, s, tmp_path, resume=True)  # both budgets kept apart
    assert len(s.calls) == calls
    # resumed at one budget only, the folder's report still holds the other
    report = await ev.evaluate(problems, keys[1:], s, tmp_path, resume=True)
    assert len(s.calls) == calls
    assert [r["max_tokens"] for r in report["runs"]] == [100, None]
    assert all(r["complete"] for r in report["runs"])


def test_a_budget_stopped_once_settled_is_a_run_of_its_own():
    keys = ev.plan(["greedy", "mcts"], ["8:confident", 8, "650tok:unbeatable", "8:unbeatable"])
    assert [k.label for k in keys] == [
        "greedy@1",  # one chain: nothing to settle
        "mcts@8",
        "mcts@8:unbeatable",
        "mcts@8:confident",
        "mcts@650tok:unbeatable",
    ]
    assert keys[3].stop_when == "confident" and keys[3].budget == 8
    assert keys[1].record_key("p1") != keys[3].record_key("p1")
    for bad in ("8:sometimes", "8:", ":confident", "8confident"):
        with pytest.raises(ValueError, match="8:confident"):
            ev.plan(["mcts"], [bad])


async def test_an_eval_compares_a_budget_spent_with_the_same_stopped_once_settled(
    sandbox, data, tmp_path
):
    """Every search answers 30: stopped once settled, self-consistency spends four chains of
    eight, and says what that saved; resumed, neither run is searched again."""
    problems = ev.load_problems(data)
    s = solver(sandbox)
    keys = ev.plan(["self_consistency"], [8, "8:confident"])
    report = await ev.evaluate(problems, keys, s, tmp_path)
    assert sorted({c[2:] for c in s.calls}) == [(8, None, "budget"), (8, None, "confident")]
    spent, settled = report["runs"]
    assert (spent["stop_when"], settled["stop_when"]) == ("budget", "confident")
    assert spent["accuracy"] == settled["accuracy"] == pytest.approx(2 / 3, abs=1e-5)
    assert all(r["stopped_by"] == "finished" and r["rollouts"] == 8 for r in spent["records"])
    assert all(r["tokens_saved"] is None for r in spent["records"])
    assert all(r["stopped_by"] == "settled" and r["rollouts"] == 4 for r in settled["records"])
    assert all(r["tokens_saved"] > 0 for r in settled["records"])
    assert settled["mean_tokens"] < spent["mean_tokens"]
    lines = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted({x["stop_when"] for x in lines}) == ["budget", "confident"]
    calls = len(s.calls)
    await ev.evaluate(problems, keys, s, tmp_path, resume=True)
    assert len(s.calls) == calls
    table = Console(file=io.StringIO(), width=120)
    table.print(ev.table(report))
    assert "8 confident" in table.file.getvalue()
    assert (tmp_path / "accuracy_vs_tokens.png").read_bytes().startswith(PNG)


def test_records_written_before_stop_rules_read_back_as_budgets_spent(tmp_path):
    rec = {"algorithm": "mcts", "budget": 4, "id": "p1", "answer": "3", "correct": True}
    write_jsonl(tmp_path / "results.jsonl", [{**rec, "tokens": 9, "seconds": 1.0}])
    (key,) = read_results(tmp_path / "results.jsonl")
    assert key == ev.RunKey("mcts", 4).record_key("p1")


# --------------------------------------------------------------------------- in-process


async def test_greedy_is_evaluated_without_scoring_its_one_chain(sandbox, data):
    """Its answer cannot depend on the reward model; best-of-N's does, and is scored."""
    reward = ScriptedReward()
    s = ev.InProcessSolver(Components(ScriptedPolicy(default=thirty), sandbox, reward), CONFIG)
    problem = ev.load_problems(data)[0].problem
    assert (await s.solve(problem, "greedy", 1)).answer == "30" and reward.calls == []
    assert (await s.solve(problem, "best_of_n", 2)).answer == "30" and reward.calls


async def test_an_in_process_eval_grades_reports_and_plots(sandbox, data, tmp_path):
    problems = ev.load_problems(data)
    keys = ev.plan(ev.ALGORITHMS, [1, 2])
    s = solver(sandbox)
    buf = io.StringIO()
    progress = ev.EvalProgress(keys, len(problems), every_s=0, console=Console(file=buf))
    out = tmp_path / "run"
    with progress:
        report = await ev.evaluate(
            problems,
            keys,
            s,
            out,
            concurrency=3,
            progress=progress,
            info={"data": {"name": "tiny"}},
        )
    searches = len(keys) * 3  # greedy once, every other algorithm at budgets 1 and 2
    assert len(keys) == 1 + 2 * (len(ev.ALGORITHMS) - 1)
    assert len(s.calls) == searches and s.most == 3  # three problems in flight at once
    assert report["status"] == "complete" and report["problems"] == 3
    assert report["models"]["versions"] == {"policy": "scripted-v1"}
    assert [(r["algorithm"], r["budget"]) for r in report["runs"]] == [
        (k.algorithm, k.budget) for k in keys
    ]
    for run in report["runs"]:
        assert (run["n"], run["correct"], run["errors"], run["complete"]) == (3, 2, 0, True)
        assert run["accuracy"] == pytest.approx(2 / 3, abs=1e-5)
        assert run["mean_tokens"] > 0 and run["mean_seconds"] > 0
        recs = {r["id"]: r for r in run["records"]}
        assert [recs[i]["correct"] for i in ("p1", "p2", "p3")] == [True, True, False]
        assert recs["p2"]["gold"] == "\\frac{60}{2}" and recs["p3"]["gold"] == "7"
        assert all(r["answer"] == "30" and r["tokens"] > 0 for r in recs.values())
    mcts2 = next(r for r in report["runs"] if r["algorithm"] == "mcts" and r["budget"] == 2)
    assert all(r["rollouts"] == 2 for r in mcts2["records"])
    for run in report["runs"]:  # every search reached 30 only, with no step dropped
        tree = run["tree"]
        assert (tree["n"], tree["invalid_share"], tree["mean_candidates"]) == (3, 0.0, 1.0)
        assert tree["mean_max_depth"] == 2.0 and tree["invalid_by_kind"] == {}
        assert tree["gold_reached"] == pytest.approx(2 / 3, abs=1e-4)
        assert tree["picked_when_reached"] == 1.0
    assert json.loads((out / "report.json").read_text()) == report
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == searches and {json.loads(x)["id"] for x in lines} == {"p1", "p2", "p3"}
    png = (out / "accuracy_vs_tokens.png").read_bytes()
    assert png.startswith(PNG) and len(png) > 5000
    shown = buf.getvalue()
    assert f"[{searches}/{searches}]" in shown
    assert "mcts@2 3/3 67%" in shown and "greedy@1 3/3 67%" in shown
    table = Console(file=io.StringIO(), width=120)
    table.print(ev.table(report))
    assert "MCTS" in table.file.getvalue() and "66.7%" in table.file.getvalue()


def test_tree_statistics_count_dropped_steps_by_kind_and_the_answers_reached():
    from search.budget import Usage
    from search.tree import Tree
    from search.tree_stats import tree_stats

    tree = Tree("p")
    a = tree.add(tree.root, status="open", tokens=10)
    tree.add(a, status="terminal", answer="4", reward=0.5, visits=2, value_sum=0.75, tokens=5)
    tree.add(a, status="terminal", answer="4")
    tree.add(a, status="terminal", answer="5", reward=-0.123456)
    tree.add(tree.root, status="invalid", error="runtime: NameError: x")
    tree.add(a, status="invalid", error="malformed: empty step")
    tree.add(a, status="invalid", error="runtime: ZeroDivisionError")
    stats = tree_stats(tree, Usage(duplicates=2))
    assert stats == {
        "steps": 7,
        "invalid": 3,
        "invalid_by_kind": {"runtime": 2, "malformed": 1},
        "duplicates": 2,
        "terminals": 3,
        "max_depth": 2,
        "candidates": {"4": 2, "5": 1},
        "terminal_scores": [["4", 0.5, 0.375], ["4", None, 0.0], ["5", -0.1235, 0.0]],
        "ends": [
            ["4", 2, 15],
            ["4", 2, 10],
            ["5", 2, 10],
            [None, 1, 0],
            [None, 2, 10],
            [None, 2, 10],
        ],
    }
    recs = [
        {"correct": False, "tree": dict(stats, gold_among=True)},
        {"correct": True, "tree": dict(stats, gold_among=True)},
        {"correct": False, "tree": dict(stats, gold_among=False)},
    ]
    summary = ev.tree_summary(recs)
    assert summary["invalid_share"] == round(9 / 21, 4)
    assert summary["duplicate_share"] == round(6 / 27, 4)
    assert summary["gold_reached"] == round(2 / 3, 4) and summary["picked_when_reached"] == 0.5
    assert ev.tree_summary([{"correct": True}]) is None


async def test_resume_skips_finished_problems_and_retries_failed_ones(sandbox, data, tmp_path):
    problems = ev.load_problems(data)
    keys = ev.plan(["greedy", "mcts"], [2])
    out = tmp_path / "run"
    first = solver(sandbox, fail={"What is 60/2?"})
    report = await ev.evaluate(problems[:2], keys, first, out, concurrency=2)
    assert len(first.calls) == 4
    for run in report["runs"]:
        assert (run["n"], run["correct"], run["errors"]) == (2, 1, 1)
        bad = next(r for r in run["records"] if r["id"] == "p2")
        assert bad["error"] == "RuntimeError: engine exploded" and bad["answer"] is None
    with (out / "results.jsonl").open("a") as f:
        f.write('{"algorithm": "greedy", "budget": 1, "id": "p3", "ans')  # a killed run's last line
    with pytest.raises(ev.EvalError, match="pass --resume"):
        await ev.evaluate(problems, keys, solver(sandbox), out)
    again = solver(sandbox)
    report = await ev.evaluate(problems, keys, again, out, concurrency=2, resume=True)
    # p1 is kept; p2 (failed) is retried; p3 is new — for each of the two runs
    assert sorted(c[0] for c in again.calls) == sorted(["What is 60/2?", "What is 3+4?"] * 2)
    for run in report["runs"]:
        assert (run["n"], run["correct"], run["errors"]) == (3, 2, 0)
        assert [r["id"] for r in run["records"]] == ["p1", "p2", "p3"]


async def test_a_run_whose_searches_all_fail_stops_and_keeps_its_report(sandbox, data, tmp_path):
    problems = ev.load_problems(data)
    s = solver(sandbox, fail={p.problem for p in problems})
    with pytest.raises(ev.EvalError, match="the first 3 searches all failed"):
        await ev.evaluate(problems, ev.plan(["greedy"], [1]), s, tmp_path, max_failures=3)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "failed" and report["runs"][0]["errors"] == 3


# --------------------------------------------------------------------------- against a server


async def test_a_killed_eval_keeps_what_it_finished_and_says_so(sandbox, data, tmp_path):
    """SIGTERM (a `kill`, a stopped job) ends `rstar eval` as ^C does: exit 130, the report
    written as interrupted with the problems finished, no traceback."""
    svc = scripted_service(sandbox, ScriptedPolicy(default=thirty, delay_s=0.5))
    out = tmp_path / "killed"
    results = out / "results.jsonl"
    async with serving(svc) as url:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "clients.cli", "eval", "--url", url, "--data", str(data),
            "--algorithms", "greedy", "--concurrency", "1", "--out", str(out),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await eventually(lambda: results.exists() and results.read_text().count("\n"), 60)
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "interrupted"
    (run,) = report["runs"]
    assert 1 <= len(run["records"]) < 3 and not run["complete"]


async def test_rstar_eval_against_a_live_server(sandbox, data, tmp_path, capsys):
    svc = scripted_service(sandbox, ScriptedPolicy(default=thirty, delay_s=0.02))
    out = tmp_path / "remote"
    async with serving(svc) as url:
        args = [
            "eval",
            "--url",
            url,
            "--data",
            str(data),
            "--algorithms",
            "greedy,self_consistency,mcts",
            "--budgets",
            "2",
            "--concurrency",
            "2",
            "--out",
            str(out),
        ]
        rc = await asyncio.to_thread(main, args)
        captured = capsys.readouterr()
        assert rc == 0, captured.err
        assert "MCTS" in captured.out and "66.7%" in captured.out
        assert "mcts@2 3/3 67%" in captured.err  # progress lines (not a terminal)
        report = json.loads((out / "report.json").read_text())
        assert report["models"]["versions"]["policy"] == "scripted"
        assert report["config"]["search"] == "the server's settings"
        assert report["data"]["sha256"] == ev.file_sha256(data)
        assert [(r["algorithm"], r["budget"], r["correct"], r["n"]) for r in report["runs"]] == [
            ("greedy", 1, 2, 3),
            ("self_consistency", 2, 2, 3),
            ("mcts", 2, 2, 3),
        ]
        assert all(r["tokens"] > 0 for run in report["runs"] for r in run["records"])
        assert (out / "accuracy_vs_tokens.png").read_bytes().startswith(PNG)
        # a budget stopped once settled reaches the server as the budget's stop rule
        rc = await asyncio.to_thread(
            main,
            [*args[:6], "self_consistency", "--budgets", "8:confident", "--out", str(out) + "s"],
        )
        assert rc == 0, capsys.readouterr().err
        (run,) = json.loads((tmp_path / "remotes" / "report.json").read_text())["runs"]
        assert run["stop_when"] == "confident"
        assert all(r["stopped_by"] == "settled" and r["tokens_saved"] for r in run["records"])
        # a budget above the server's cap stops the run with the server's reason
        rc = await asyncio.to_thread(main, [*args[:-1], str(tmp_path / "big"), "--budgets", "999"])
        assert rc == 2 and "RSTAR_MAX_ROLLOUTS" in capsys.readouterr().err
    rc = await asyncio.to_thread(main, [*args[:-1], str(tmp_path / "gone")])
    assert rc == 2 and "cannot reach" in capsys.readouterr().err


# --------------------------------------------------------------------------- real model


@pytest.mark.timeout(300)  # about 50 s alone on 2 cores; more when the machine is busy
def test_rstar_eval_with_the_transformers_engine_on_two_gsm8k_problems(tmp_path):
    """The tiny model (the suite's RSTAR_POLICY_MODEL), not the default."""
    data = shared_data("gsm8k_test.jsonl")
    out = tmp_path / "real"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "clients.cli",
            "eval",
            "--engine",
            "transformers",
            "--data",
            str(data),
            "--limit",
            "2",
            "--algorithms",
            "greedy",
            "--max-depth",
            "2",
            "--max-tokens",
            "64",
            "--concurrency",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    (run,) = report["runs"]
    assert (run["algorithm"], run["n"], run["errors"]) == ("greedy", 2, 0)
    assert [r["id"] for r in run["records"]] == ["gsm8k-test-0", "gsm8k-test-1"]
    assert all(r["tokens"] > 0 for r in run["records"])
    # graded one by one against GSM8K's answers (18 and 3), and the accuracy is their share
    assert [r["gold"] for r in run["records"]] == ["18", "3"]
    right = [r["correct"] for r in run["records"]]
    assert right == [
        r["answer"] is not None and answers_equal(r["gold"], r["answer"]) for r in run["records"]
    ]
    assert run["accuracy"] == pytest.approx(sum(right) / 2) and run["correct"] == sum(right)
    assert report["models"]["policy"] == "tiny"
    assert report["models"]["policy_engine"] == "transformers"
    assert report["models"]["versions"]["policy"]  # a digest of the weights
    assert len((out / "results.jsonl").read_text().splitlines()) == 2
    assert (out / "accuracy_vs_tokens.png").read_bytes().startswith(PNG)
    assert "greedy" in p.stdout and "report:" in p.stdout


# --------------------------------------------------------------------------- layering

ROOT = Path(__file__).resolve().parents[1]


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a source file imports (absolute imports, anywhere in the file:
    the lazy ones inside functions count too)."""
    tops = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            tops |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return tops


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("training", {"clients"}),  # the round trainer stands on evaluation/, not the CLI
        ("evaluation", {"clients", "server"}),  # the core sits below both of its users
        ("search", {"evaluation", "server", "clients"}),  # pure logic: nothing above it
    ],
)
def test_no_import_runs_up_the_layers(folder, forbidden):
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, folder
    wrong = {
        str(f.relative_to(ROOT)): sorted(bad)
        for f in files
        if (bad := imported_packages(f) & forbidden)
    }
    assert not wrong, f"imports running up the layers: {wrong}"


def test_a_resumed_run_keeps_its_search_settings(tmp_path):
    info = {"data": {"sha256": "abc"}, "config": {"search": {"candidates": 2, "c_uct": 2.0}}}
    (tmp_path / "results.jsonl").write_text('{"algorithm": "mcts"}\n')
    (tmp_path / "report.json").write_text(json.dumps(info))
    ev.check_out_dir(tmp_path, info, resume=True)  # the same settings go on
    newer = {"data": info["data"], "config": {"search": {"candidates": 2, "max_expansions": 1}}}
    ev.check_out_dir(tmp_path, newer, resume=True)  # a setting the old run had not: its default
    changed = {"data": info["data"], "config": {"search": {"candidates": 4, "c_uct": 2.0}}}
    with pytest.raises(ev.EvalError, match="other settings \\(candidates 2 → 4\\)"):
        ev.check_out_dir(tmp_path, changed, resume=True)
    rule = {"data": info["data"], "config": {**info["config"], "settle_confidence": 0.9}}
    ev.check_out_dir(tmp_path, rule, resume=True)  # the old run did not record one
    (tmp_path / "report.json").write_text(json.dumps(rule))
    stricter = {"data": info["data"], "config": {**info["config"], "settle_confidence": 0.99}}
    with pytest.raises(ev.EvalError, match=r"settle_confidence 0\.9 → 0\.99"):
        ev.check_out_dir(tmp_path, stricter, resume=True)
    other = {"data": {"sha256": "def"}, "config": info["config"]}
    with pytest.raises(ev.EvalError, match="another data file"):
        ev.check_out_dir(tmp_path, other, resume=True)
