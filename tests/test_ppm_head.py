"""A PPM head fitted on frozen policy features: the fit, its centring, and the checkpoint it
writes scoring through a real engine exactly as the fitted head does (tiny model)."""

import json
import math

import numpy as np
import pytest

from search.extract import LabelRules
from search.protocols import ScoreRequest
from search.steps import render_step
from search.tree import Tree
from training.ppm_head import FeatureStore, centre, fit_head, load_head, save_ppm, train_head


def synthetic(n=200, dim=16, seed=0):
    """Features whose first dimension tells chosen from rejected, with a large nearly constant
    dimension (as a transformer's last hidden state has) and noise elsewhere."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2 * n, dim))
    x[:n, 0] += 1.5  # chosen
    x[:, 1] = 300 + rng.normal(scale=0.1, size=2 * n)
    return x, [(i, n + i) for i in range(n)]


def test_the_fitted_head_ranks_by_the_telling_dimension():
    x, pairs = synthetic()
    w = np.asarray(fit_head(x, pairs, decay=1e-3))
    logits = x @ w
    assert np.mean([logits[a] > logits[b] for a, b in pairs]) > 0.8
    assert abs(w[0]) == max(abs(w))


def test_centring_moves_the_mean_logit_to_zero_and_keeps_the_ranking():
    x, pairs = synthetic()
    w = np.asarray(fit_head(x, pairs, decay=1e-3))
    w[1] += 0.05  # an offset of ~15 logits: tanh would saturate on every text
    c = np.asarray(centre(w.tolist(), x))
    assert abs((x @ c).mean()) < 1e-6
    before = [(x @ w)[a] > (x @ w)[b] for a, b in pairs]
    after = [(x @ c)[a] > (x @ c)[b] for a, b in pairs]
    assert np.mean(np.equal(before, after)) > 0.95


def tree_with_outcomes() -> Tree:
    """Three right and three wrong trajectories under two first steps."""
    t = Tree("What is 3 + 4?")
    t.root.status = "expanded"
    for name, right in (("good_first_step_adds_them", True), ("bad_first_step_multiplies", False)):
        s = t.add(
            t.root,
            status="expanded",
            text=render_step(f"# {name}\nv = 1", False),
            reasoning=name,
            code="v = 1",
        )
        for i in range(3):
            answer = "7" if right else "12"
            t.add(
                s,
                status="terminal",
                final=True,
                correct=right,
                answer=answer,
                output=answer,
                reasoning=f"print {i}",
                code=f"print({answer})",
                text=render_step(f"# print it, way {i}\nprint({answer})", True),
            )
    return t


@pytest.mark.timeout(600)
async def test_the_head_trains_on_trees_and_its_checkpoint_scores_as_it_does(
    tiny_model_path, tmp_path
):
    from models.settings import ModelSettings
    from models.vllm_reward import VLLMReward

    trees = tmp_path / "trees.jsonl"
    with trees.open("w") as f:
        for i in range(12):
            f.write(json.dumps({"id": f"p{i}", "tree": tree_with_outcomes().to_dict()}) + "\n")
    store = FeatureStore(tiny_model_path, tmp_path / "features")
    head, report = train_head(
        tiny_model_path, trees, LabelRules(min_edit_chars=0), trees, holdout_share=0.3, store=store
    )
    assert report.train_pairs > 0 and report.heldout.overall.pairs > 0
    assert report.dev is not None and set(report.dev.by_kind) == {"step", "terminal"}
    assert report.decay in (1e-4, 1e-3, 1e-2, 1e-1) and len(report.decays) == 4
    assert store.missing([]) == [] and any(store.dir.iterdir())

    out = save_ppm(tiny_model_path, head, tmp_path / "ppm", report)
    req = ScoreRequest(
        "What is 3 + 4?", (render_step("# good_first_step_adds_them\nv = 1", False),)
    )
    from models.ppm import ppm_text

    (feat,) = store.load([ppm_text(req)])
    expected = math.tanh(float(head.logits(feat[None])[0]) / head.scale)
    reward = VLLMReward(str(out), ModelSettings(cpu_kv_cache_gb=0.5, max_model_len=1024))
    try:
        (score,) = await reward.score([req])
    finally:
        reward.close()
    assert score == pytest.approx(expected, abs=2e-2)
    saved, saved_report = load_head(out)
    assert saved == head and saved_report == report


def test_a_variant_is_reported_from_stored_features_and_never_embeds(tmp_path):
    """dev_report fits and reports from what the store holds; a text it lacks is an error, not
    an engine start."""
    from search.extract import PreferencePair
    from training.ppm_head import Head, _sides, dev_report, stored_scores

    x, index = synthetic(n=60)
    store = FeatureStore("no-such-policy", tmp_path)
    store.dir.mkdir(parents=True)

    def pair(a: int, b: int, problem: str, kind: str) -> PreferencePair:
        return PreferencePair(
            problem=problem, prefix=[], chosen=f"step {a}", rejected=f"step {b}", chosen_q=1.0,
            rejected_q=-1.0, kind=kind, problem_id=problem,
        )  # fmt: skip

    train = [pair(a, b, f"p{k % 10}", "step") for k, (a, b) in enumerate(index[:40])]
    dev = [pair(a, b, f"d{k % 5}", "terminal") for k, (a, b) in enumerate(index[40:])]
    for p, (a, b) in zip([*train, *dev], index, strict=True):
        for text, row in zip(_sides(p), (a, b), strict=True):
            np.save(store._path(text), x[row].astype(np.float32))
    report = dev_report(store, train, dev, 1e-3)
    assert report.by_kind["terminal"].pairs == 20 and report.by_kind["terminal"].accuracy > 0.8
    with pytest.raises(ValueError, match="1 texts have no stored features"):
        dev_report(store, [*train, pair(0, 999, "p0", "step")], dev, 1e-3)
    # a saved head scores stored pairs as the report did: two rounds compared without a model
    head = Head(weight=fit_head(x, index[:40], 1e-3), decay=1e-3, scale=1.0)
    wins = [c > r for c, r in stored_scores(head, store, dev)]
    assert len(wins) == 20 and sum(wins) >= 16
    with pytest.raises(ValueError, match="texts have no stored features"):
        stored_scores(head, store, [pair(0, 999, "d0", "terminal")])
