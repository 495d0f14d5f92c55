"""`rstar eval-ppm`: a PPM's pairwise accuracy on preference pairs, per kind, with its interval."""

import asyncio
import json

import pytest

from evaluation.ppm_pairs import pair_report, score_pairs
from evaluation.stats import wilson_interval
from models.hf_reward import TransformersPPM
from search.extract import PreferencePair
from tests.support.cli import rstar
from training.common import is_held_out


def pair(i: int, chosen: str, rejected: str, kind: str = "step") -> PreferencePair:
    return PreferencePair(
        problem=f"problem {i % 3}",
        prefix=[f"# Step 1: p{i}\n"],
        chosen=chosen,
        rejected=rejected,
        chosen_q=1.0,
        rejected_q=-1.0,
        kind=kind,
        problem_id=f"q{i % 3}",
    )


class KeywordScores:
    """Scores a step by a word in it, and records the calls (the test is about the accounting)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    async def score(self, requests):
        self.calls.append(len(requests))
        table = {"good": 0.9, "bad": -0.4, "same": 0.1}
        return [next(v for k, v in table.items() if k in r.steps[-1]) for r in requests]


async def test_accuracy_per_kind_ties_count_half_and_batches_keep_pairs_together():
    pairs = [
        pair(0, "good", "bad"),
        pair(1, "bad", "good"),
        pair(2, "same", "same"),
        pair(3, "good", "bad", "final"),
        pair(4, "good", "same", "final"),
    ]
    model = KeywordScores()
    scores = await score_pairs(model, pairs, batch_size=2)
    assert model.calls == [4, 4, 2]  # both sides of each pair in one call
    assert scores[1] == (-0.4, 0.9) and scores[4] == (0.9, 0.1)
    report = pair_report(pairs, scores)
    step, final = report.by_kind["step"], report.by_kind["final"]
    assert (step.pairs, step.ties, step.accuracy) == (3, 1, pytest.approx(1.5 / 3))
    assert (final.pairs, final.accuracy) == (2, 1.0)
    assert report.overall.accuracy == pytest.approx(3.5 / 5) and report.overall.problems == 3
    assert report.overall.ci95 == wilson_interval(3.5, 5)
    assert step.mean_margin == pytest.approx((1.3 - 1.3 + 0) / 3)


@pytest.mark.timeout(300)
def test_eval_ppm_scores_a_pairs_file_with_a_real_ppm(tmp_path, tiny_ppm_path):
    """A real PPM: the tiny model's backbone with a random one-label head."""
    pairs = [
        pair(i, f"x = {i}\n", f"x = {i + 1}\n", "final" if i % 2 else "step") for i in range(12)
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(p.model_dump_json() + "\n" for p in pairs))
    out = tmp_path / "report.json"
    # the trainer's held-out split, by problem: a share that holds out exactly one problem
    share = min(h for h in (held_out_point(f"q{i}") for i in range(3))) + 1e-9
    held = [x for x in pairs if is_held_out(x.problem_id, share)]
    assert len(held) == 4
    p = rstar(
        "eval-ppm",
        "--ppm",
        tiny_ppm_path,
        "--pairs",
        str(path),
        "--batch-size",
        "3",
        "--held-out-share",
        str(share),
        "--out",
        str(out),
    )
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["overall"]["pairs"] == 4 and report["overall"]["problems"] == 1
    assert set(report["by_kind"]) == {"step", "final"} and "all:" in p.stdout
    assert "scoring pairs 4/4" in p.stderr  # progress, as lines off a terminal
    # what the PPM's own scores of the held-out pairs give, scored here in-process
    ppm = TransformersPPM(tiny_ppm_path)
    try:
        expected = pair_report(held, asyncio.run(score_pairs(ppm, held, batch_size=3)))
    finally:
        ppm.close()
    for kind, got in [("overall", report["overall"]), *report["by_kind"].items()]:
        want = expected.overall if kind == "overall" else expected.by_kind[kind]
        assert (got["pairs"], got["ties"]) == (want.pairs, want.ties), kind
        assert got["accuracy"] == pytest.approx(want.accuracy), kind
        assert got["mean_margin"] == pytest.approx(want.mean_margin, abs=1e-5), kind
    # a random head gives the two sides different scores
    assert report["overall"]["ties"] < 4 and report["overall"]["mean_margin"] != 0


def held_out_point(key: str) -> float:
    """Where `key` falls in [0, 1) for `is_held_out` (held out below the share)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if is_held_out(key, mid) else (mid, hi)
    return hi


def test_eval_ppm_bad_input_is_a_clear_error(tmp_path, tiny_ppm_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "p", "prefix": []}\n')
    p = rstar("eval-ppm", "--ppm", tiny_ppm_path, "--pairs", str(bad))
    assert p.returncode == 2 and str(bad) in p.stderr and "validation error" in p.stderr
    p = rstar("eval-ppm", "--ppm", tiny_ppm_path, "--pairs", str(tmp_path / "missing.jsonl"))
    assert p.returncode == 2 and "missing.jsonl" in p.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    p = rstar("eval-ppm", "--ppm", tiny_ppm_path, "--pairs", str(empty))
    assert p.returncode == 2 and "no preference pairs" in p.stderr
    good = tmp_path / "good.jsonl"
    good.write_text(pair(0, "a", "b").model_dump_json() + "\n")
    p = rstar("eval-ppm", "--ppm", str(tmp_path / "nope"), "--pairs", str(good))
    assert p.returncode == 2 and "--ppm" in p.stderr
    p = rstar("eval-ppm", "--ppm", tiny_ppm_path, "--pairs", str(good), "--held-out-share", "2")
    assert p.returncode == 2 and "--held-out-share" in p.stderr
