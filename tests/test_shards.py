"""A round's generation in shards (`--shard I/N`) and their merge (`--merge-shards N`).

Fast tests use a scripted policy and the real nsjail sandbox: shards merged make the same trees
and training data as one whole run; the merge refuses missing shards, shards searched with
other settings, and a problem twice; a finished shard is not searched again; `auto/N` reads a
Kubernetes Indexed Job's index. The slow test runs two shards as separate processes on the tiny
model (transformers engine, seeded) and compares their merge with one whole run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from search import Components
from tests.support.scripted import ScriptedPolicy
from training import generate as gen
from training.config import COMPLETION_INDEX, ConfigError, build_config
from training.round import main, parser
from training.shards import SHARDS, read_shard_record, shard_problems, shard_trees

ROWS = [
    {"id": f"p{x}", "problem": f"What is {x}*5?", "answer": str(5 * x)} for x in (6, 7, 8, 9, 10)
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def x_is_6_or_7(path):
    """Step 1 sets x to 6 or 7, step 2 prints x*5: right on p6 and p7 only, a pair on each."""
    if not path:
        return [f"# Step 1: set x\nx = {x}\n<end_of_step>" for x in (6, 7)]
    return ["# Step 2: multiply\nprint(x * 5)\n<end_of_code>"]


def argv(out: Path, problems: Path, *extra: str) -> list[str]:
    return [
        "--problems", str(problems), "--out", str(out), "--engine", "transformers",
        "--policy", "tiny", "--rollouts", "2", "--candidates", "2", "--max-depth", "3",
        "--concurrency", "1", "--round", "1", *extra,
    ]  # fmt: skip


def comps(sandbox) -> Components:
    return Components(ScriptedPolicy(default=x_is_6_or_7), sandbox)


def without_timing(rec: dict) -> dict:
    rec = dict(rec)
    rec["usage"] = {k: v for k, v in rec["usage"].items() if k != "elapsed_s"}
    return rec


def test_the_shard_flags_are_checked(monkeypatch):
    def cfg(*flags):
        return build_config(parser().parse_args(["--out", "o", *flags]))

    assert cfg("--shard", "1/4").shard_spec() == (1, 4)
    assert cfg("--shard", "1/4").phases == ["generate"]  # a shard generates only
    monkeypatch.setenv(COMPLETION_INDEX, "3")
    assert cfg("--shard", "auto/4").shard_spec() == (3, 4)
    monkeypatch.delenv(COMPLETION_INDEX)
    for flags, message in [
        (["--shard", "auto/4"], f"needs ${COMPLETION_INDEX}"),
        (["--shard", "4/4"], "0 <= I < N"),
        (["--shard", "x"], "expected I/N"),
        (["--shard", "0/2", "--phases", "generate,extract"], "generate phase only"),
        (["--shard", "0/2", "--merge-shards", "2"], "either generates a shard or joins"),
        (["--merge-shards", "0"], "merge_shards"),
        (["--shard", "0/2", "--bootstrap", "gsm8k"], "takes no shards"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            cfg(*flags)
    # how a round is cut up is not what the round is
    assert cfg("--shard", "0/2").identity_sha256() == cfg().identity_sha256()
    assert cfg("--merge-shards", "2").identity_sha256() == cfg().identity_sha256()
    # shards agree on what generation reads, not on how its trees are labelled or trained on
    assert cfg("--top-k", "3").generation_sha256() == cfg().generation_sha256()
    assert cfg("--sft-lr", "1e-5").generation_sha256() == cfg().generation_sha256()
    assert cfg("--rollouts", "3").generation_sha256() != cfg().generation_sha256()


def test_shards_take_every_nth_problem():
    rows = list(range(7))
    parts = [shard_problems(rows, i, 3) for i in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(x for part in parts for x in part) == rows


def test_merged_shards_make_the_same_trees_and_data_as_one_whole_run(tmp_path, sandbox):
    probs = write_jsonl(tmp_path / "p.jsonl", ROWS)
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    phases = ["--phases", "generate,extract"]
    assert main(argv(whole, probs, *phases), components=comps(sandbox)) == 0

    for i in range(2):
        assert main(argv(sharded, probs, "--shard", f"{i}/2"), components=comps(sandbox)) == 0
        rec = read_shard_record(sharded, i, 2)
        assert rec is not None and rec.status == "complete" and rec.problems == (3, 2)[i]
        assert [r["id"] for r in lines(shard_trees(sharded, i, 2))] == [r["id"] for r in ROWS[i::2]]
    assert not (sharded / "manifest.json").exists()  # shards leave the round's record alone
    merge = argv(sharded, probs, *phases, "--merge-shards", "2")
    assert main(merge, components=comps(sandbox)) == 0

    a, b = lines(whole / gen.TREES), lines(sharded / gen.TREES)
    assert [r["id"] for r in b] == [r["id"] for r in ROWS]  # the problems' order
    assert [without_timing(r) for r in a] == [without_timing(r) for r in b]
    for name in ("sft.jsonl", "ppm_pairs.jsonl", "trajectories.jsonl"):
        assert (whole / "data" / name).read_text() == (sharded / "data" / name).read_text(), name
    assert lines(sharded / "data" / "sft.jsonl")  # there was something to compare
    m = json.loads((sharded / "manifest.json").read_text())
    counts = m["data"]["generate"]
    assert counts["shards"] == 2 and counts["finished"] == counts["problems"] == len(ROWS)
    assert (
        counts["solved"]
        == json.loads((whole / "manifest.json").read_text())["data"]["generate"]["solved"]
    )


def test_a_finished_shard_is_not_searched_again(tmp_path, sandbox):
    probs = write_jsonl(tmp_path / "p.jsonl", ROWS)
    out = tmp_path / "r"
    assert main(argv(out, probs, "--shard", "1/2"), components=comps(sandbox)) == 0
    again = comps(sandbox)
    assert main(argv(out, probs, "--shard", "1/2"), components=again) == 0
    assert again.policy.calls == []


def test_the_merge_refuses_missing_foreign_and_repeated_problems(tmp_path, sandbox, caplog):
    probs = write_jsonl(tmp_path / "p.jsonl", ROWS)
    out = tmp_path / "r"
    merge = argv(out, probs, "--phases", "generate", "--merge-shards", "3")
    assert main(argv(out, probs, "--shard", "0/3"), components=comps(sandbox)) == 0
    assert main(merge, components=comps(sandbox)) == 1
    m = json.loads((out / "manifest.json").read_text())
    assert "shard(s) 1, 2 of 3 not finished" in m["phases"]["generate"]["reason"]

    # another shard searched with other settings: not mixed in
    other = argv(out, probs, "--shard", "1/3")
    other[other.index("--rollouts") + 1] = "3"
    assert main(other, components=comps(sandbox)) == 0
    assert main(argv(out, probs, "--shard", "2/3"), components=comps(sandbox)) == 0
    assert main(merge, components=comps(sandbox)) == 1
    m = json.loads((out / "manifest.json").read_text())
    assert "shard 1/3 searched with other settings" in m["phases"]["generate"]["reason"]
    # ... and that shard cannot be resumed with this round's settings either
    assert main(argv(out, probs, "--shard", "1/3"), components=comps(sandbox)) == 2
    assert "started with other search settings" in caplog.text
    for f in (out / SHARDS).glob("1-of-3.*"):
        f.unlink()
    assert main(argv(out, probs, "--shard", "1/3"), components=comps(sandbox)) == 0

    # a problem that is not this shard's (a hand-edited or mixed-up file)
    path = shard_trees(out, 2, 3)
    path.write_text(path.read_text() + shard_trees(out, 0, 3).read_text().splitlines()[0] + "\n")
    assert main(merge, components=comps(sandbox)) == 1
    m = json.loads((out / "manifest.json").read_text())
    assert "shard 2/3 holds 'p6', another's problem" in m["phases"]["generate"]["reason"]
    assert not (out / gen.TREES).exists()  # nothing half-merged


# --- two processes on the tiny model -------------------------------------------------------------


@pytest.mark.timeout(900)
def test_two_shard_processes_on_the_tiny_model_merge_into_the_whole_run(tmp_path, tiny_model_path):
    """The shards run as separate local processes (as an Indexed Job's pods would, one with
    its index from the environment), seeded, one problem at a time: their merge must extract
    what one whole run of the same round extracts."""
    probs = write_jsonl(tmp_path / "p.jsonl", ROWS[:4])
    base = [
        sys.executable, "-m", "server.train_round", "--problems", str(probs),
        "--engine", "transformers", "--policy", "tiny", "--rollouts", "2", "--candidates", "2",
        "--max-depth", "2", "--step-max-tokens", "48", "--parallel", "1", "--concurrency", "1",
        "--seed", "7", "--round", "1",
    ]  # fmt: skip
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen([*base, "--out", str(sharded), "--shard", "0/2"], env=env),
        subprocess.Popen(
            [*base, "--out", str(sharded), "--shard", "auto/2"], env={**env, COMPLETION_INDEX: "1"}
        ),
    ]
    assert [p.wait(timeout=800) for p in procs] == [0, 0]
    phases = ["--phases", "generate,extract"]
    subprocess.run([*base, "--out", str(sharded), "--merge-shards", "2", *phases], check=True)
    subprocess.run([*base, "--out", str(whole), *phases], env=env, check=True)

    a, b = lines(whole / gen.TREES), lines(sharded / gen.TREES)
    assert [r["id"] for r in a] == [r["id"] for r in b] == [r["id"] for r in ROWS[:4]]
    assert all(r["usage"]["tokens"] > 0 for r in b)  # the model searched
    assert [r["tree"] for r in a] == [r["tree"] for r in b]
    for name in ("sft.jsonl", "ppm_pairs.jsonl", "trajectories.jsonl", "stats.json"):
        assert (whole / "data" / name).read_text() == (sharded / "data" / name).read_text(), name
