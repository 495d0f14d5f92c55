"""`python -m server.train_round`: one self-evolution round, end to end.

Fast tests use a scripted policy and the real nsjail sandbox: configuration precedence, bad
inputs refused (exit 2) before anything runs, a killed generation resumed without repeating a
finished problem, the manifest's phase bookkeeping (skips with reasons, re-runs, forced
phases), a round interrupted (exit 130) or failing in a phase (exit 1) and run again, an
interrupted evaluation resumed, and a rebuild whose counts differ from the record. Slow tests
run the tiny model (SmolLM2-135M, not the 0.5B default) on the transformers engine: a toy round
(generate → extract → sft → ppm → eval) whose checkpoints load back in transformers and vLLM,
and a bootstrap round on 3 GSM8K rows.

The 135M tiny model rarely solves even trivial problems, so the toy round's problem set
includes one problem whose tree is seeded (hand-built, with a correct and a wrong answer) in the
resumable trees file: the real model searches the other problems, and training has data either
way.
"""

import asyncio
import json
import logging
from pathlib import Path

import pytest

from evaluation import Problem
from search import Budget, Components, SearchConfig
from search.budget import Usage
from search.steps import ANSWER_END, render_output, render_step
from search.tree import Tree
from tests.support.data import shared_data
from tests.support.scripted import ScriptedPolicy
from training import generate as gen
from training.config import RoundConfig, build_config
from training.manifest import Manifest
from training.round import Round, main, parser

PNG = b"\x89PNG\r\n\x1a\n"
TOY = [
    {"id": "seed-6x5", "problem": "What is 6*5?", "answer": "30"},
    {"id": "add", "problem": "What is 2+3?", "answer": "5"},
    {"id": "mul", "problem": "What is 4*5?", "answer": "20"},
]
EVAL = [
    {"id": "e1", "problem": "What is 3+4?", "answer": "7"},
    {"id": "e2", "problem": "What is 2*6?", "answer": "12"},
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# --- a hand-built tree with a correct and a wrong answer -----------------------------------------


def _final(tree: Tree, parent, answer: str, correct: bool, q: float):
    text = (
        render_step("# Step 2: multiply\nprint(x * 5)", True)
        + render_output(answer)
        + f"The answer is \\boxed{{{answer}}}.{ANSWER_END}\n"
    )
    return tree.add(
        parent,
        status="terminal",
        final=True,
        text=text,
        reasoning="multiply",
        code="print(x * 5)",
        output=answer,
        answer=answer,
        answer_text=f"The answer is \\boxed{{{answer}}}.",
        correct=correct,
        reward=q,
        visits=2,
        value_sum=2 * q,
    )


def seeded_line(problem: dict) -> str:
    """A trees-file line for "What is 6*5?": x = 6 → 30 (correct), x = 7 → 35 (wrong)."""
    tree = Tree(problem["problem"])
    tree.root.status, tree.root.visits, tree.root.value_sum = "expanded", 4, 0.0
    good = tree.add(
        tree.root,
        status="expanded",
        text=render_step("# Step 1: set x\nx = 6", False),
        reasoning="set x",
        code="x = 6",
        visits=2,
        value_sum=2.0,
    )
    bad = tree.add(
        tree.root,
        status="expanded",
        text=render_step("# Step 1: set x\nx = 7", False),
        reasoning="set x",
        code="x = 7",
        visits=2,
        value_sum=-2.0,
    )
    _final(tree, good, "30", True, 1.0)
    _final(tree, bad, "35", False, -1.0)
    rec = {
        "id": problem["id"],
        "problem": problem["problem"],
        "gold": problem["answer"],
        "answer": "30",
        "correct": True,
        "solved": True,
        "reward_source": "gold",
        "stopped_by": "rollouts",
        "usage": Usage().model_dump(),
        "tree": tree.to_dict(),
    }
    return json.dumps(rec)


# --- scripted policies ---------------------------------------------------------------------------


def times_five(x: int):
    """One step setting x, then one printing x*5 (so "What is 6*5?" is right with x = 6)."""

    def script(path):
        if not path:
            return [f"# Step 1: set x\nx = {x}\n<end_of_step>"]
        return ["# Step 2: multiply\nprint(x * 5)\n<end_of_code>"]

    return script


def problems_of(rows) -> list[Problem]:
    return [Problem(r["id"], r["problem"], r["answer"], i + 1) for i, r in enumerate(rows)]


CONFIG = SearchConfig(candidates=2, max_depth=3, parallel_rollouts=1)


# --- configuration -------------------------------------------------------------------------------


def test_config_file_then_flags_and_shared_training_flags(tmp_path):
    cfg_file = tmp_path / "round.json"
    cfg_file.write_text(
        json.dumps(
            {
                "out": "from-file",
                "policy": "p0",
                "search": {"rollouts": 8, "candidates": 3},
                "sft": {"lr": 1e-5},
                "eval": {"data": "e.jsonl", "algorithms": ["greedy"]},
            }
        )
    )
    args = parser().parse_args(
        [
            "--config",
            str(cfg_file),
            "--rollouts",
            "2",
            "--out",
            "from-flag",
            "--train-max-steps",
            "3",
            "--ppm-max-steps",
            "5",
            "--phases",
            "generate,train",
            "--eval-algorithms",
            "greedy,mcts",
            "--no-final-pairs",
        ]
    )
    cfg = build_config(args)
    assert cfg.out == "from-flag" and cfg.policy == "p0"  # flag wins; file kept otherwise
    assert (cfg.search.rollouts, cfg.search.candidates) == (2, 3)
    assert cfg.sft.lr == 1e-5 and cfg.sft.max_steps == 3 and cfg.ppm_train.max_steps == 5
    assert cfg.phases == ["generate", "sft", "ppm"] and cfg.final_pairs is False
    assert cfg.eval.algorithms == ["greedy", "mcts"] and cfg.eval.data == "e.jsonl"
    toml = tmp_path / "round.toml"
    toml.write_text('out = "t"\nengine = "transformers"\n[search]\nmax_depth = 5\n')
    cfg = build_config(parser().parse_args(["--config", str(toml)]))
    assert (cfg.out, cfg.engine, cfg.search.max_depth) == ("t", "transformers", 5)
    # what identifies a round ignores how it runs
    a = RoundConfig(out="a", engine="vllm", phases=["generate"])
    b = RoundConfig(out="b", engine="transformers", search={"concurrency": 1})
    assert a.identity_sha256() == b.identity_sha256()
    assert a.identity_sha256() != RoundConfig(out="a", top_k=3).identity_sha256()
    # a setting added later leaves the identity of rounds recorded before it alone while unset
    assert "unsolved_rollouts" not in a.identity()["search"]
    more = build_config(
        parser().parse_args(["--out", "m", "--rollouts", "8", "--unsolved-rollouts", "16"])
    )
    assert more.search.unsolved_rollouts == 16 and more.identity()["search"]["unsolved_rollouts"]
    with pytest.raises(ValueError, match="must exceed rollouts"):
        RoundConfig(out="m", search={"rollouts": 8, "unsolved_rollouts": 8})


def test_the_recorded_rounds_keep_their_identity():
    """A setting added since docs/measured/evolution/ was recorded must leave those rounds'
    identities (and so their resumes and rebuilds) alone: its ADDED_LATER default."""
    root = Path(__file__).resolve().parent.parent / "docs/measured/evolution"
    manifests = sorted(root.glob("r*/manifest.json"))
    assert manifests
    for path in manifests:
        recorded = json.loads(path.read_text())
        cfg = RoundConfig.model_validate(recorded["config"])
        assert cfg.identity_sha256() == recorded["identity_sha256"], path


# --- bad inputs ----------------------------------------------------------------------------------


@pytest.fixture
def no_compute(monkeypatch):
    """Fail the test if a round would start (models, sandbox, training)."""

    def boom(self):
        raise AssertionError("the round started despite bad input")

    monkeypatch.setattr(Round, "run", boom)


def test_bad_inputs_exit_2_with_a_clear_message_before_compute(
    tmp_path, capsys, no_compute, tiny_model_path
):
    good = write_jsonl(tmp_path / "good.jsonl", TOY[1:])
    out = tmp_path / "out"
    base = ["--engine", "transformers", "--out", str(out)]
    notmodel = tmp_path / "notmodel"
    notmodel.mkdir()
    (notmodel / "weights.txt").write_text("hi")
    brokencfg = tmp_path / "brokencfg"
    brokencfg.mkdir()
    (brokencfg / "config.json").write_text("{not json")
    cases = [
        (
            [
                "--problems",
                str(
                    write_jsonl(
                        tmp_path / "noanswer.jsonl",
                        [{"problem": "What is 1+1?", "answer": "2"}, {"problem": "What is 2+2?"}],
                    )
                ),
            ],
            "noanswer.jsonl:2: missing an 'answer' field",
        ),
        (
            ["--problems", str(write_jsonl(tmp_path / "unreadable.jsonl", [TOY[1], "{oops"]))],
            "unreadable.jsonl:2: not valid JSON",
        ),
        (
            ["--problems", str(good), "--policy", str(notmodel)],
            f"--policy {notmodel}: not a model (no config.json",
        ),
        (
            ["--problems", str(good), "--policy", str(brokencfg)],
            "not a model (config.json is not valid JSON",
        ),
        (["--problems", str(good), "--policy", str(tmp_path / "missing")], "no such directory"),
        (["--problems", str(good), "--ppm", tiny_model_path], "not a PPM"),
        (["--problems", str(tmp_path / "nofile.jsonl")], "nofile.jsonl: no such file"),
        (
            ["--problems", str(good), "--eval-data", str(tmp_path / "unreadable.jsonl")],
            "--eval-data: ",
        ),
        (["--problems", str(good), "--rollouts", "0"], "search.rollouts"),
        (["--problems", str(good), "--phases", "sft"], "phase sft needs extract finished first"),
        (["--bootstrap", "gsm8k", "--problems", str(good)], "no reference solution"),
    ]
    for extra, message in cases:
        assert main([*extra, *base]) == 2, extra
        err = capsys.readouterr().err
        assert message in err, (extra, err)
        assert err.startswith("train_round: ")
        assert not out.exists(), extra  # nothing written

    # an output directory holding another round
    out.mkdir()
    other = Manifest(
        config=RoundConfig(out=str(out), problems=str(good), top_k=3).model_dump(),
        identity_sha256=RoundConfig(out=str(out), problems=str(good), top_k=3).identity_sha256(),
    )
    other.phases["generate"].status = other.phases["extract"].status = "complete"
    other.save(out)
    before = (out / "manifest.json").read_text()
    assert main(["--problems", str(good), *base]) == 2
    err = capsys.readouterr().err
    assert "holds another round (its configuration differs in: top_k)" in err
    assert (out / "manifest.json").read_text() == before


def test_settings_of_unfinished_phases_may_change(tmp_path, capsys, no_compute):
    """A stopped or failed phase can be tried again with new settings; a finished one is not
    redone behind the user's back."""
    good = write_jsonl(tmp_path / "good.jsonl", TOY[1:])
    out = tmp_path / "out"
    args = ["--engine", "transformers", "--out", str(out), "--problems", str(good)]
    cfg = RoundConfig(out=str(out), problems=str(good), engine="transformers")
    recorded = Manifest(config=cfg.model_dump(mode="json"), identity_sha256=cfg.identity_sha256())
    for p in ("generate", "extract", "sft"):
        recorded.phases[p].status = "complete"
    recorded.phases["ppm"].status = "interrupted"
    recorded.save(out)
    with pytest.raises(AssertionError, match="the round started"):  # accepted: the round runs
        main([*args, "--ppm-lr", "1e-5", "--ppm-head-lr", "1e-6"])
    assert main([*args, "--sft-lr", "1e-5"]) == 2  # sft is finished
    err = capsys.readouterr().err
    assert "differs in: sft.lr" in err and "sft finished with the old settings" in err
    assert "--force-phase sft re-runs" in err
    with pytest.raises(AssertionError, match="the round started"):
        main([*args, "--sft-lr", "1e-5", "--force-phase", "sft"])
    assert main([*args, "--top-k", "3"]) == 2  # extract and sft are finished
    assert "extract, sft finished" in capsys.readouterr().err
    # a generation that partly ran keeps its trees: new search settings would mix with them
    recorded.phases["generate"].status = "interrupted"
    recorded.save(out)
    assert main([*args, "--rollouts", "3"]) == 2
    assert "generate partly ran with the old settings" in capsys.readouterr().err


# --- generation: resumable -----------------------------------------------------------------------


async def test_a_killed_generation_resumes_without_repeating_a_finished_problem(tmp_path, sandbox):
    rows = [
        dict(TOY[0], id="p1"),
        dict(TOY[0], id="p2", problem="What is 7*5?", answer="35"),
        dict(TOY[0], id="p3", problem="What is 8*5?", answer="40"),
    ]
    problems = problems_of(rows)
    first = ScriptedPolicy(default=times_five(6), delay_s=0.2)
    task = asyncio.create_task(
        gen.generate(
            problems,
            Components(first, sandbox),
            CONFIG,
            Budget(rollouts=2),
            tmp_path / gen.TREES,
            concurrency=1,
        )
    )
    partial = tmp_path / gen.PARTIAL
    for _ in range(3000):  # the first problem persisted
        if partial.exists() and partial.read_text().count("\n") >= 1:
            break
        await asyncio.sleep(0.02)
    task.cancel()  # the kill, mid-way through the second problem
    with pytest.raises(asyncio.CancelledError):
        await task
    (done,) = lines(partial)
    assert done["id"] == "p1" and done["correct"] and done["solved"]
    assert Tree.from_json(json.dumps(done["tree"])).problem == "What is 6*5?"
    first_line = partial.read_text()
    # a kill in the middle of a write leaves half a line
    cut = json.dumps({"id": "p2", "problem": "What is 7*5?", "tree": {"nodes": []}})[:40]
    partial.write_text(first_line + cut)

    again = ScriptedPolicy(default=times_five(7))
    counts = await gen.generate(
        problems,
        Components(again, sandbox),
        CONFIG,
        Budget(rollouts=2),
        tmp_path / gen.TREES,
        concurrency=2,
    )
    assert (counts.resumed, counts.searched, counts.finished, counts.problems) == (1, 2, 3, 3)
    assert not partial.exists()
    trees = tmp_path / gen.TREES
    text = trees.read_text()
    assert text.startswith(first_line)  # the finished line is untouched
    recs = lines(trees)
    assert sorted(r["id"] for r in recs) == ["p1", "p2", "p3"]  # each once, the cut line gone
    asked = {req.prompt.split("<code>")[0] for call in again.calls for req in call}
    assert not any("What is 6*5?" in p for p in asked)  # p1 was not searched again
    assert {r["id"]: r["correct"] for r in recs} == {"p1": True, "p2": True, "p3": False}
    assert counts.solved == 2 and counts.correct == 2


async def test_unsolved_problems_get_the_extra_rollouts_and_are_counted(tmp_path, sandbox):
    def x_is_7_or_8(path):
        if not path:
            return [f"# Step 1: set x\nx = {x}\n<end_of_step>" for x in (7, 8)]
        return ["# Step 2: multiply\nprint(x * 5)\n<end_of_code>"]

    rows = [dict(TOY[0], id=f"p{gold}", answer=gold) for gold in ("35", "40", "99")]
    config = CONFIG.model_copy(update={"unsolved_rollouts": 3})
    counts = await gen.generate(
        problems_of(rows),
        Components(ScriptedPolicy(default=x_is_7_or_8), sandbox),
        config,
        Budget(rollouts=1),
        tmp_path / gen.TREES,
    )
    rollouts = {r["id"]: r["usage"]["rollouts"] for r in lines(tmp_path / gen.TREES)}
    assert rollouts == {"p35": 1, "p40": 2, "p99": 2}  # x = 7 first; then x = 8, then nothing
    assert (counts.solved, counts.extended, counts.extended_solved) == (2, 2, 1)


async def test_failed_searches_are_kept_out_and_retried(tmp_path, sandbox):
    problems = problems_of([dict(TOY[0], id="ok"), dict(TOY[0], id="bad", problem="boom")])

    class Exploding(ScriptedPolicy):
        async def generate(self, requests):
            if any("boom" in r.prompt for r in requests):
                raise RuntimeError("engine exploded")
            return await super().generate(requests)

    comps = Components(Exploding(default=times_five(6)), sandbox)
    with pytest.raises(gen.GenerateError, match=r"1 of 2 searches failed.*re-run"):
        await gen.generate(problems, comps, CONFIG, Budget(rollouts=1), tmp_path / gen.TREES)
    assert [r["id"] for r in lines(tmp_path / gen.PARTIAL)] == ["ok"]
    counts = await gen.generate(
        problems, comps, CONFIG, Budget(rollouts=1), tmp_path / gen.TREES, max_failure_rate=0.5
    )
    assert (counts.resumed, counts.failed, counts.finished) == (1, 1, 1)
    assert (tmp_path / gen.TREES).exists()


# --- the orchestration (scripted models) ---------------------------------------------------------


def test_a_round_with_nothing_learnt_skips_training_and_says_why(tmp_path, sandbox):
    """Every answer wrong: 0 trajectories → sft and ppm skipped with reasons, eval of the inputs
    only; a re-run does nothing; --force-phase extract re-runs extract and what follows."""
    probs = write_jsonl(tmp_path / "p.jsonl", TOY[:1])
    evals = write_jsonl(tmp_path / "e.jsonl", [dict(TOY[0], id="e1")])
    out = tmp_path / "round"
    policy = ScriptedPolicy(default=times_five(7))  # 35, never 30
    argv = [
        "--problems",
        str(probs),
        "--out",
        str(out),
        "--engine",
        "transformers",
        "--rollouts",
        "2",
        "--candidates",
        "2",
        "--max-depth",
        "3",
        "--round",
        "1",
        "--eval-data",
        str(evals),
        "--eval-algorithms",
        "greedy,mcts",
        "--eval-rollouts",
        "2",
    ]
    assert main(argv, components=Components(policy, sandbox)) == 0
    m = manifest(out)
    ph = m["phases"]
    assert [ph[p]["status"] for p in ("generate", "extract", "sft", "ppm", "eval")] == [
        "complete",
        "complete",
        "skipped",
        "skipped",
        "complete",
    ]
    assert "0 correct trajectories" in ph["sft"]["reason"]
    assert "no preference pairs" in ph["ppm"]["reason"]
    assert "only the inputs" in ph["eval"]["reason"]
    assert m["status"] == "complete" and m["round"] == 1 and m["mode"] == "mcts"
    assert m["data"]["generate"]["solved"] == 0 and m["data"]["extract"]["trajectories"] == 0
    assert json.loads((out / "data" / "stats.json").read_text())["problems"] == 1
    assert (out / "data" / "sft.jsonl").read_text() == ""
    assert m["outputs"] == {"policy": None, "ppm": None, "eval": "eval"}
    assert m["next_round"]["policy"] == "default" and m["next_round"]["ppm"] is None
    assert set(m["metrics"]) == {"previous"} and "greedy@1" in m["metrics"]["previous"]
    assert (out / "eval" / "report.json").exists() and not (out / "eval.partial").exists()
    assert (out / "eval" / "accuracy.png").read_bytes().startswith(PNG)
    assert m["inputs"]["problems"]["sha256"] and m["inputs"]["policy"]["kind"] == "model"
    assert all(ph[p]["seconds"] is not None for p in ph)

    calls = len(policy.calls)
    assert main(argv, components=Components(policy, sandbox)) == 0
    assert len(policy.calls) == calls  # every phase already finished: nothing re-run
    assert len(manifest(out)["runs"]) == 2

    before = manifest(out)["phases"]["extract"]["finished"]
    assert main([*argv, "--force-phase", "extract"], components=Components(policy, sandbox)) == 0
    m = manifest(out)
    assert m["phases"]["generate"]["finished"] == ph["generate"]["finished"]
    assert m["phases"]["extract"]["started"] >= before
    assert m["phases"]["eval"]["status"] == "complete"
    assert len(policy.calls) > calls  # eval re-ran after the forced extract


def round_argv(out: Path, problems: Path, evals: Path | None = None, *extra: str) -> list[str]:
    """A small round on the tiny model's name (the scripted components stand in for it)."""
    argv = [
        "--problems",
        str(problems),
        "--out",
        str(out),
        "--engine",
        "transformers",
        "--policy",
        "tiny",
        "--rollouts",
        "2",
        "--candidates",
        "2",
        "--max-depth",
        "3",
        "--round",
        "1",
        *extra,
    ]
    if evals is not None:
        argv += [
            "--eval-data",
            str(evals),
            "--eval-algorithms",
            "greedy",
            "--eval-rollouts",
            "1",
            "--eval-concurrency",
            "1",
        ]
    return argv


class Raising(ScriptedPolicy):
    """Raises `exc` on the calls whose prompt holds `when` (every call when None), `times`
    times at most; otherwise scripted."""

    def __init__(
        self, *args, exc: BaseException, when: str | None = None, times: int = 10**9, **kw
    ) -> None:
        super().__init__(*args, **kw)
        self.exc, self.when, self.left = exc, when, times

    async def generate(self, requests):
        hit = self.when is None or any(self.when in r.prompt for r in requests)
        if hit and self.left > 0:
            self.left -= 1
            raise self.exc
        return await super().generate(requests)


def test_an_interrupted_round_exits_130_a_failed_phase_exits_1_and_both_run_again(
    tmp_path, sandbox, tiny_model_path
):
    """^C (or SIGTERM) in a phase: exit 130, the phase and the round "interrupted"; a phase that
    fails: exit 1, "failed" with the reason; later phases stay pending; the same command run
    again finishes the round."""
    probs = write_jsonl(tmp_path / "p.jsonl", TOY[:1])
    out = tmp_path / "round"
    argv = round_argv(out, probs, None, "--phases", "generate,extract")

    def comps(policy):
        return Components(policy, sandbox)

    stopped = Raising(default=times_five(7), exc=KeyboardInterrupt())
    assert main(argv, components=comps(stopped)) == 130
    m = manifest(out)
    assert m["status"] == "interrupted" and m["runs"][-1]["status"] == "interrupted"
    gen_rec = m["phases"]["generate"]
    assert (gen_rec["status"], gen_rec["reason"]) == ("interrupted", "interrupted (SIGINT/SIGTERM)")
    assert m["phases"]["extract"]["status"] == "pending"

    broken = Raising(default=times_five(7), exc=RuntimeError("engine exploded"))
    assert main(argv, components=comps(broken)) == 1
    m = manifest(out)
    assert m["status"] == "failed" and m["runs"][-1]["status"] == "failed"
    gen_rec = m["phases"]["generate"]
    assert gen_rec["status"] == "failed" and "1 of 1 searches failed" in gen_rec["reason"]
    assert m["phases"]["extract"]["status"] == "pending"

    assert main(argv, components=comps(ScriptedPolicy(default=times_five(7)))) == 0
    m = manifest(out)
    assert [m["phases"][p]["status"] for p in ("generate", "extract")] == ["complete"] * 2
    assert [r["status"] for r in m["runs"]] == ["interrupted", "failed", "incomplete"]


def test_an_interrupted_evaluation_resumes_without_repeating_finished_problems(
    tmp_path, sandbox, tiny_model_path
):
    evals_rows = [*EVAL, {"id": "e3", "problem": "What is 9-4?", "answer": "5"}]
    probs = write_jsonl(tmp_path / "p.jsonl", TOY[:1])
    evals = write_jsonl(tmp_path / "e.jsonl", evals_rows)
    out = tmp_path / "round"
    argv = round_argv(out, probs, evals)
    # the second held-out problem is where the ^C lands (one problem at a time, in file order)
    policy = Raising(default=times_five(7), exc=KeyboardInterrupt(), when="What is 2*6?", times=1)
    assert main(argv, components=Components(policy, sandbox)) == 130
    m = manifest(out)
    assert m["phases"]["eval"]["status"] == "interrupted" and m["status"] == "interrupted"
    partial = out / "eval.partial" / "previous" / "results.jsonl"
    assert [r["id"] for r in lines(partial)] == ["e1"]  # the first one is kept

    again = ScriptedPolicy(default=times_five(7))
    assert main(argv, components=Components(again, sandbox)) == 0
    asked = {req.prompt.split("<code>")[-2] for call in again.calls for req in call}
    assert not any("What is 3+4?" in p or "What is 6*5?" in p for p in asked)  # not again
    assert any("What is 2*6?" in p for p in asked) and any("What is 9-4?" in p for p in asked)
    m = manifest(out)
    assert m["phases"]["eval"]["status"] == "complete" and m["status"] == "complete"
    assert m["metrics"]["previous"]["greedy@1"]["n"] == 3
    report = json.loads((out / "eval" / "previous" / "report.json").read_text())
    assert [r["id"] for r in report["runs"][0]["records"]] == ["e1", "e2", "e3"]
    assert not (out / "eval.partial").exists()


def fake_trainer(steps: int):
    """Stands in for the SFT trainer (`training.launch.train`): a checkpoint directory and
    the record of a run of `steps` optimizer steps, in no time."""
    from training.common import TrainResult

    def train(kind, round_dir, data, init, hp, launcher, log_name=None):
        ckpt = round_dir / ("policy" if kind == "sft" else "ppm")
        ckpt.mkdir(parents=True, exist_ok=True)
        (ckpt / "config.json").write_text("{}")
        result = TrainResult(
            kind=kind,
            out_dir=str(ckpt),
            base_model=init,
            examples=1,
            optimizer_steps=steps,
            tokens=10 * steps,
            seconds=0.1,
            tokens_per_s=100.0,
            final_loss=1.0,
            step_losses=[1.0] * steps,
            hparams=hp,
        )
        (ckpt / "rstar-train.json").write_text(result.model_dump_json())
        return result

    return train


def test_a_rebuild_whose_counts_differ_is_recorded_and_warned_about(
    tmp_path, sandbox, tiny_model_path, monkeypatch, caplog
):
    """Weights gone, no adapter to merge: the phase trains again; when the new run's counts
    differ from the recorded ones the rebuild says so, and the record of the round stands."""
    probs = write_jsonl(tmp_path / "p.jsonl", TOY[:1])
    out = tmp_path / "round"
    argv = round_argv(out, probs, None, "--phases", "generate,extract,sft")
    comps = Components(ScriptedPolicy(default=times_five(6)), sandbox)  # solved: SFT data
    monkeypatch.setattr("training.launch.train", fake_trainer(2))
    assert main(argv, components=comps) == 0
    before = manifest(out)["phases"]["sft"]
    assert before["status"] == "complete" and before["counts"]["optimizer_steps"] == 2

    (out / "policy" / "config.json").unlink()  # the weights are gone
    monkeypatch.setattr("training.launch.train", fake_trainer(3))
    caplog.set_level(logging.WARNING, logger="rstar.round")
    assert main(argv, components=comps) == 0
    sft = manifest(out)["phases"]["sft"]
    (rebuild,) = sft["rebuilds"]
    assert rebuild["same_counts"] is False and rebuild["counts"]["optimizer_steps"] == 3
    # the record stands: the recorded run's counts and times, the rebuild beside them
    assert sft["counts"] == before["counts"] and sft["finished"] == before["finished"]
    assert "sft: rebuilt, but optimizer_steps, tokens differ from the recorded run" in caplog.text
    assert (out / "policy" / "config.json").exists()


# --- a real toy round (the tiny model on transformers) ----------------------------------------

TOY_FLAGS = [
    "--engine",
    "transformers",
    "--rollouts",
    "2",
    "--candidates",
    "2",
    "--max-depth",
    "3",
    "--parallel",
    "2",
    "--concurrency",
    "2",
    "--max-tokens",
    "300",
    "--step-max-tokens",
    "64",
    "--seed",
    "0",
    "--policy",
    "tiny",
    "--train-max-steps",
    "1",
    "--train-max-length",
    "256",
    "--train-micro-batch-size",
    "2",
    "--train-lora-rank",
    "4",
    "--train-grad-accum",
    "1",
    "--train-log-every",
    "1",
    "--eval-limit",
    "2",
    "--eval-algorithms",
    "greedy,mcts",
    "--eval-rollouts",
    "2",
    "--eval-max-tokens",
    "100",
    "--eval-concurrency",
    "2",
]


@pytest.fixture(scope="module")
def toy_round(tmp_path_factory, tiny_model_path):
    tmp = tmp_path_factory.mktemp("toy")
    probs = write_jsonl(tmp / "toy.jsonl", TOY)
    evals = write_jsonl(tmp / "eval.jsonl", EVAL)
    out = tmp / "round1"
    (out / "generate").mkdir(parents=True)
    (out / gen.PARTIAL).write_text(seeded_line(TOY[0]) + "\n")
    argv = ["--problems", str(probs), "--out", str(out), "--eval-data", str(evals), *TOY_FLAGS]
    code = main(argv)
    return out, code, argv


@pytest.mark.timeout(600)
def test_toy_round_runs_every_phase_and_records_it(toy_round):
    out, code, argv = toy_round
    assert code == 0
    m = manifest(out)
    assert m["status"] == "complete"
    for p in ("generate", "extract", "sft", "ppm", "eval"):
        assert m["phases"][p]["status"] == "complete", (p, m["phases"][p])
        assert m["phases"][p]["seconds"] >= 0 and m["phases"][p]["finished"]
    g = m["data"]["generate"]
    assert (g["problems"], g["resumed"], g["searched"]) == (3, 1, 2)  # the seeded one kept
    recs = lines(out / gen.TREES)
    assert sorted(r["id"] for r in recs) == ["add", "mul", "seed-6x5"]
    for r in recs:
        tree = Tree.from_json(json.dumps(r["tree"]))
        assert tree.problem == r["problem"] and tree.root.children
        assert r["usage"]["tokens"] > 0 or r["id"] == "seed-6x5"
    x = m["data"]["extract"]
    assert x["trajectories"] >= 1 and x["pairs"] >= 2 and x["problems"] == 3
    stats = json.loads((out / "data" / "stats.json").read_text())
    assert stats["trajectories"] == x["trajectories"] and stats["steps_per_trajectory"]["2"] >= 1
    assert len(lines(out / "data" / "sft.jsonl")) == x["trajectories"]
    assert len(lines(out / "data" / "ppm_pairs.jsonl")) == x["pairs"]
    assert m["phases"]["sft"]["counts"]["optimizer_steps"] == 1
    assert m["phases"]["ppm"]["counts"]["init"] == str(out / "policy")
    assert (out / "logs" / "sft.log").exists() and (out / "logs" / "ppm.log").exists()
    # evaluated: the inputs against the new checkpoints, on greedy and MCTS
    assert set(m["metrics"]["previous"]) == set(m["metrics"]["new"]) == {"greedy@1", "mcts@2"}
    assert set(m["metrics"]["delta_accuracy"]) == {"greedy@1", "mcts@2"}
    report = json.loads((out / "eval" / "report.json").read_text())
    assert report["problems"] == 2 and report["sides"]["new"]["models"]["prompt_style"] == "bare"
    assert (out / "eval" / "accuracy.png").read_bytes().startswith(PNG)
    assert (out / "eval" / "new" / "results.jsonl").exists()
    assert m["inputs"]["problems"]["sha256"] and m["inputs"]["eval_data"]["rows"] == 2
    nxt = m["next_round"]
    assert nxt["policy"] == str((out / "policy").resolve())
    assert nxt["ppm"] == str((out / "ppm").resolve())
    assert nxt["env"]["RSTAR_PROMPT_STYLE"] == "bare"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "data",
        "eval",
        "generate",
        "logs",
        "manifest.json",
        "policy",
        "ppm",
    ]
    # a second run finds everything done and runs nothing
    assert main(argv) == 0
    m2 = manifest(out)
    assert m2["phases"] == m["phases"] and len(m2["runs"]) == 2


@pytest.mark.timeout(600)
async def test_toy_round_checkpoints_load_in_transformers(toy_round):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from models.hf_reward import TransformersPPM
    from search.protocols import ScoreRequest
    from training.ppm_train import is_ppm

    out, code, _ = toy_round
    assert code == 0
    tok = AutoTokenizer.from_pretrained(out / "policy")
    model = AutoModelForCausalLM.from_pretrained(out / "policy")
    enc = tok("<code>\n# Step 1:", return_tensors="pt")
    with torch.inference_mode():
        ids = model.generate(
            **enc, max_new_tokens=4, do_sample=False, pad_token_id=tok.eos_token_id
        )
    assert ids.shape[1] > enc["input_ids"].shape[1]
    assert is_ppm(out / "ppm")
    ppm = TransformersPPM(str(out / "ppm"))
    try:
        scores = await ppm.score([ScoreRequest("What is 6*5?", ("# Step 1: set x\nx = 6\n",))])
    finally:
        ppm.close()
    assert len(scores) == 1 and -1.0 <= scores[0] <= 1.0


@pytest.mark.timeout(600)
async def test_toy_round_checkpoints_load_in_vllm(toy_round):
    pytest.importorskip("vllm")
    from models.settings import ModelSettings
    from models.vllm_policy import VLLMPolicy
    from models.vllm_reward import VLLMReward
    from search.protocols import GenerationRequest, ScoreRequest

    out, code, _ = toy_round
    assert code == 0
    settings = ModelSettings(cpu_kv_cache_gb=0.5, max_model_len=1024)
    policy = VLLMPolicy(str(out / "policy"), settings)
    try:
        (gens,) = await policy.generate([GenerationRequest("<code>\n# Step 1:", max_tokens=4)])
    finally:
        policy.close()
    assert gens and gens[0].tokens > 0
    reward = VLLMReward(str(out / "ppm"), settings)
    try:
        (score,) = await reward.score([ScoreRequest("What is 6*5?", ("x = 6\n",))])
    finally:
        reward.close()
    assert -1.0 <= score <= 1.0


def copy_of_round(toy_round, tmp_path):
    """A copy of the toy round, and the argv that runs the copy."""
    import shutil

    out, _, argv = toy_round
    copy = tmp_path / "round1"
    shutil.copytree(out, copy)
    args = list(argv)
    args[args.index("--out") + 1] = str(copy)
    return copy, args


def keep_only(folder, *names):
    """Remove everything in `folder` but `names` (what a round commits of a checkpoint)."""
    import shutil

    for f in folder.iterdir():
        if f.name not in names:
            f.unlink() if f.is_file() else shutil.rmtree(f)


@pytest.mark.timeout(600)
def test_toy_round_trains_missing_weights_again_from_its_records(toy_round, tmp_path):
    """The weights are not kept with a round's artefacts: re-running the round's command
    trains them again from the recorded data and settings, and nothing else re-runs."""
    import shutil

    import torch
    from safetensors.torch import load_file

    out, code, _argv = toy_round
    assert code == 0
    copy, args = copy_of_round(toy_round, tmp_path)
    shutil.rmtree(copy / "policy")
    shutil.rmtree(copy / "ppm")
    before = manifest(copy)
    assert main(args) == 0
    m = manifest(copy)
    for p in ("sft", "ppm"):
        rec = m["phases"][p]
        assert rec["status"] == "complete" and rec["finished"] == before["phases"][p]["finished"]
        assert len(rec["rebuilds"]) == 1 and rec["rebuilds"][0]["same_counts"], rec["rebuilds"]
    for p in ("generate", "extract", "eval"):  # later and earlier phases stand
        assert m["phases"][p] == before["phases"][p]
    assert m["metrics"] == before["metrics"] and m["status"] == "complete"
    for kind in ("sft", "ppm"):  # the recorded run's log stands; the rebuild's is beside it
        log_text = (copy / "logs" / f"{kind}.log").read_text()
        assert log_text == (out / "logs" / f"{kind}.log").read_text()
        assert (copy / "logs" / f"{kind}.rebuild.log").read_text().startswith("$ ")
    for d in ("policy", "ppm"):  # the same recipe, and the same weights
        meta = [json.loads((r / d / "rstar-train.json").read_text()) for r in (out, copy)]
        assert meta[0]["fingerprint"] and meta[0]["fingerprint"] == meta[1]["fingerprint"]
        a, b = (load_file(str(r / d / "model.safetensors")) for r in (out, copy))
        assert a.keys() == b.keys()
        assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
    # a third run finds the weights there and trains nothing
    assert main(args) == 0
    assert all(len(manifest(copy)["phases"][p]["rebuilds"]) == 1 for p in ("sft", "ppm"))


@pytest.mark.timeout(600)
def test_toy_round_merges_its_committed_adapters_instead_of_training(toy_round, tmp_path):
    """With only the adapters on disk (what is committed), re-running the round merges them
    onto the init models: no training, the recorded weights back up to fp16 rounding. An
    adapter whose sha256 differs from the record is not trusted: that phase trains again."""

    import torch
    from safetensors.torch import load_file

    from training.restore import adapter_sha256

    out, code, _argv = toy_round
    assert code == 0
    copy, args = copy_of_round(toy_round, tmp_path)
    for d in ("policy", "ppm"):
        keep_only(copy / d, "adapter", "rstar-train.json")
    before = manifest(copy)
    assert all(before["phases"][p]["counts"]["adapter_sha256"] for p in ("sft", "ppm"))
    assert main(args) == 0
    m = manifest(copy)
    for p in ("sft", "ppm"):
        assert len(m["phases"][p]["restores"]) == 1 and not m["phases"][p]["rebuilds"]
    assert not (copy / "logs" / "sft.rebuild.log").exists()
    for d in ("policy", "ppm"):
        a, b = (load_file(str(r / d / "model.safetensors")) for r in (out, copy))
        assert a.keys() == b.keys()
        assert all(torch.allclose(a[k], b[k], atol=2e-3) for k in a)
    assert (copy / "ppm" / "adapter" / "adapter_model.safetensors").exists()

    keep_only(copy / "ppm", "adapter", "rstar-train.json")
    (copy / "ppm" / "adapter" / "adapter_model.safetensors").write_bytes(b"tampered")
    assert main(args) == 0
    ph = manifest(copy)["phases"]
    assert len(ph["ppm"]["rebuilds"]) == 1 and len(ph["sft"]["restores"]) == 1
    rebuilt = ph["ppm"]["rebuilds"][0]
    # trained on the restored (fp16-rounded) policy, so bit for bit the recorded adapter only
    # by chance (Adam's first step is nearly sign(grad)): the record says which, and keeps the
    # recorded one's hash
    assert rebuilt["same_counts"]
    assert rebuilt["counts"]["adapter_sha256"] == adapter_sha256(copy / "ppm")
    assert rebuilt["same_adapter"] is (
        rebuilt["counts"]["adapter_sha256"] == before["phases"]["ppm"]["counts"]["adapter_sha256"]
    )
    assert (
        ph["ppm"]["counts"]["adapter_sha256"] == before["phases"]["ppm"]["counts"]["adapter_sha256"]
    )


@pytest.mark.timeout(600)
def test_toy_round_can_fit_its_ppm_as_a_head_and_restore_it_from_the_head(toy_round, tmp_path):
    """--ppm-method head (forced: the round's PPM was made otherwise) re-makes the PPM as a
    linear head on the new policy's frozen features; with only the head record on disk a re-run
    rebuilds the PPM from it in seconds, the same weights."""

    import torch
    from safetensors.torch import load_file

    _out, code, _argv = toy_round
    assert code == 0
    copy, args = copy_of_round(toy_round, tmp_path)
    args += ["--ppm-method", "head", "--phases", "ppm"]
    assert main([*args, "--force-phase", "ppm"]) == 0  # another PPM: re-made on purpose
    rec = manifest(copy)["phases"]["ppm"]
    assert rec["status"] == "complete" and rec["counts"]["method"] == "head"
    assert rec["counts"]["pairs"] > 0 and rec["counts"]["head_sha256"]
    assert (copy / "ppm" / "rstar-head.json").exists()
    before = load_file(str(copy / "ppm" / "model.safetensors"))

    keep_only(copy / "ppm", "rstar-head.json")
    assert main(args) == 0
    rec = manifest(copy)["phases"]["ppm"]
    assert len(rec["restores"]) == 1 and not rec["rebuilds"]
    after = load_file(str(copy / "ppm" / "model.safetensors"))
    assert before.keys() == after.keys()
    assert all(torch.allclose(before[k], after[k]) for k in before)


# --- round 0 -------------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_bootstrap_round_on_three_gsm8k_rows(tmp_path, tiny_model_path):
    """Round 0 on the tiny model, from GSM8K's train split (the default --problems)."""
    train = shared_data("gsm8k_train.jsonl")
    evals = write_jsonl(tmp_path / "eval.jsonl", EVAL[:1])
    out = tmp_path / "round0"
    argv = [
        "--bootstrap",
        "gsm8k",
        "--limit",
        "3",
        "--round",
        "0",
        "--out",
        str(out),
        "--policy",
        "tiny",
        "--engine",
        "transformers",
        "--train-max-steps",
        "1",
        "--train-max-length",
        "512",
        "--train-micro-batch-size",
        "2",
        "--train-grad-accum",
        "1",
        "--eval-data",
        str(evals),
        "--eval-algorithms",
        "greedy",
        "--no-eval-previous",
        "--eval-max-tokens",
        "64",
        "--step-max-tokens",
        "64",
    ]
    assert main(argv) == 0
    m = manifest(out)
    assert m["mode"] == "bootstrap" and m["round"] == 0 and m["status"] == "complete"
    assert m["inputs"]["problems"]["path"] == str(train.resolve())
    b = m["data"]["bootstrap"]
    assert b["rows"] == 3 and 1 <= b["verified"] <= 3
    assert b["verified"] + sum(b["rejected"].values()) == 3
    trajs = lines(out / gen.TRAJECTORIES)
    assert len(trajs) == b["verified"] and all(t["source"] == "gsm8k" for t in trajs)
    assert m["data"]["extract"]["sft_examples"] == b["verified"]
    assert m["data"]["extract"]["pairs"] == 0
    assert m["phases"]["sft"]["status"] == "complete"
    assert m["phases"]["sft"]["counts"]["base_model"] == tiny_model_path
    assert m["phases"]["ppm"]["status"] == "skipped"
    assert "no preference pairs" in m["phases"]["ppm"]["reason"]
    assert set(m["metrics"]) == {"new"} and m["metrics"]["new"]["greedy@1"]["n"] == 1
    assert m["next_round"]["policy"] == str((out / "policy").resolve())
    assert m["next_round"]["ppm"] is None
    assert (out / "policy" / "config.json").exists() and not (out / "ppm").exists()


# --- generation against remote servers -----------------------------------------------------------


@pytest.mark.timeout(900)
def test_generation_against_a_local_vllm_serve(tmp_path, tiny_model_path):
    """`--engine remote`: the round searches against an OpenAI-compatible server (here a real
    `vllm serve` of the tiny model, as a fleet's Service would be), many problems in flight."""
    pytest.importorskip("vllm")
    from tests.support.vllm_server import vllm_server

    probs = write_jsonl(tmp_path / "p.jsonl", TOY[1:])
    out = tmp_path / "remote"
    with vllm_server(tiny_model_path) as url:
        argv = [
            "--problems",
            str(probs),
            "--out",
            str(out),
            "--engine",
            "remote",
            "--policy-url",
            url,
            "--policy",
            "test-model",
            "--prompt-style",
            "few_shot",
            "--phases",
            "generate,extract",
            "--rollouts",
            "2",
            "--candidates",
            "2",
            "--max-depth",
            "2",
            "--parallel",
            "2",
            "--concurrency",
            "2",
            "--step-max-tokens",
            "64",
        ]
        assert main(argv) == 0
    m = manifest(out)
    assert m["inputs"]["policy"]["kind"] == "remote"
    assert m["phases"]["generate"]["status"] == m["phases"]["extract"]["status"] == "complete"
    assert "sft" not in m["phases"] or m["phases"]["sft"]["status"] != "complete"
    recs = lines(out / gen.TREES)
    assert sorted(r["id"] for r in recs) == ["add", "mul"]
    for r in recs:  # every problem was searched on the server's tokens
        assert r["usage"]["tokens"] > 0 and Tree.from_json(json.dumps(r["tree"])).root.children
