"""GSM8K reference solutions → step trajectories (round 0's bootstrap), on real rows and the real
nsjail sandbox."""

import json

import pytest

from search.extract import Trajectory, render_sft
from search.steps import CODE_END, STEP_END, parse_step, render_prompt
from tests.support.data import shared_data
from training.gsm8k import Rejected, bootstrap, convert_row, row_fields, verify


@pytest.fixture(scope="module")
def rows() -> dict[str, dict]:
    out = {}
    with shared_data("gsm8k_train.jsonl").open() as f:
        for i, line in enumerate(f):
            if i >= 400:
                break
            row = json.loads(line)
            out[row["id"]] = row
    return out


def test_converts_a_real_row(rows):
    sol = convert_row(rows["gsm8k-train-0"])  # Natalia's clips: 48/2, then 48+24
    assert not isinstance(sol, Rejected)
    assert sol.gold == "72" and sol.problem.startswith("Natalia sold clips")
    assert len(sol.steps) == 2 and [s.final for s in sol.steps] == [False, True]
    first, last = sol.bodies()
    assert first == "# Step 1: Natalia sold 48/2 = 24 clips in May.\nclips_may = 48/2"
    # the later expression uses the earlier result's variable; the last step prints the answer
    assert "= 48+clips_may" in last and last.endswith("print(round(clips_altogether, 2))")
    assert "<<" not in "".join(sol.bodies())
    # each step reads back as a valid step of the format, with the right ending
    for body, text, step in zip(sol.bodies(), sol.step_texts(), sol.steps, strict=True):
        assert text.endswith((CODE_END if step.final else STEP_END) + "\n")
        parsed = parse_step(body, CODE_END if step.final else STEP_END)
        assert parsed.ok and parsed.final == step.final and parsed.code == step.code


def test_unannotated_lines_join_the_next_step(rows):
    row = rows["gsm8k-train-23"]  # last line "so 20/4 = $5" carries no annotation
    sol = convert_row(row)
    assert not isinstance(sol, Rejected)
    assert sol.steps[-1].reasoning.startswith("She bought 4 tops")
    assert sol.steps[-1].code.startswith("print(")


def test_row_without_annotations_is_rejected(rows):
    r = convert_row(rows["gsm8k-train-29"])
    assert isinstance(r, Rejected) and r.kind == "no_annotations"
    assert r.problem_id == "gsm8k-train-29"


def test_original_gsm8k_shape_and_odd_literals():
    row = {
        "question": "A box holds 07 pens. How many pens do 3 boxes hold, plus 1,000?",
        "answer": "3 boxes hold 3*07 = <<3*07=21>>21 pens.\n"
        "With 1,000 more: 21+1000 = <<21+1000=1021>>1021\n#### 1,021",
    }
    assert row_fields(row)[1:] == (row["question"], row["answer"], "1021")
    sol = convert_row(row)
    assert not isinstance(sol, Rejected)
    assert sol.gold == "1021"
    assert "3*7" in sol.program()  # 07 is not valid Python; the leading zero goes


def test_not_arithmetic_is_rejected():
    row = {"problem": "p", "answer": "4", "solution": "x is <<2^2=4>>4\n#### 4"}
    r = convert_row(row)
    assert isinstance(r, Rejected) and r.kind == "not_arithmetic"


async def test_verifies_in_the_real_sandbox(rows, sandbox, grader):
    sol = convert_row(rows["gsm8k-train-2"])  # Betty's wallet: 100/2, 15*2, 100-50-30-15
    assert not isinstance(sol, Rejected)
    traj = await verify(sol, sandbox, grader)
    assert isinstance(traj, Trajectory), traj
    assert traj.correct and traj.answer == "5" and traj.source == "gsm8k"
    assert traj.problem_id == "gsm8k-train-2"
    assert traj.steps[-1].output in ("5", "5.0")
    assert traj.steps[-1].text.endswith("<answer>The answer is \\boxed{5}.<end_of_answer>\n")
    # as SFT text: the bare prompt, then the steps the policy writes
    ex = render_sft(traj)
    assert ex.prompt == render_prompt(traj.problem, [], "bare")
    assert ex.completion.startswith("# Step 1: In the beginning, Betty has only 100 / 2 = $50.")


async def test_wrong_gold_fails_verification(rows, sandbox, grader):
    row = dict(rows["gsm8k-train-0"], answer="73")
    sol = convert_row(row)
    assert not isinstance(sol, Rejected)
    r = await verify(sol, sandbox, grader)
    assert isinstance(r, Rejected) and r.kind == "wrong_answer"
    assert "72" in r.reason and "73" in r.reason


async def test_unannotated_last_computation_fails_verification(rows, sandbox, grader):
    r = await verify(convert_row(rows["gsm8k-train-23"]), sandbox, grader)
    assert isinstance(r, Rejected) and r.kind == "wrong_answer"  # prints 20, gold is 5


async def test_bootstrap_counts(rows, sandbox, grader):
    sample = [rows[f"gsm8k-train-{i}"] for i in range(40)]
    seen = []
    good, bad, stats = await bootstrap(
        sample, sandbox, grader, concurrency=4, progress=seen.append, progress_every=20
    )
    assert stats.rows == 40 and len(seen) == 2
    assert stats.verified == len(good) and len(good) + len(bad) == 40
    assert stats.converted == 40 - stats.rejected.get("no_annotations", 0)
    assert stats.verified >= 34  # 37 of the first 40 survive; a little slack for the grader
    assert [t.problem_id for t in good] == sorted(
        (t.problem_id for t in good), key=lambda s: int(s.rsplit("-", 1)[1])
    )
