"""Training the policy (SFT) and the PPM on the tiny model (SmolLM2-135M, not the 0.5B default), on
CPU.

Kept small (short texts, a few optimizer steps): the point is the loop, the loss masking and
that the checkpoints load back in the engines, not what the model learns.
"""

import itertools
import json
import math

import pytest

from models.ppm import pairwise_loss
from search.extract import PreferencePair, SftExample, Trajectory, TrajectoryStep, render_sft
from search.protocols import ScoreRequest
from search.steps import render_output, render_step
from training.common import TrainHParams, length_grouped_batches, lr_at, total_steps
from training.sft import IGNORE, tokenize_example, train_sft

PROBLEM = "Tom has 3 boxes of 4 pens. How many pens?"


def trajectory(problem: str, n: int) -> Trajectory:
    s1 = render_step(f"# Step 1: Count the pens.\npens = 3 * {n}", False)
    s2 = render_step("# Step 2: Print the answer.\nprint(pens)", True)
    s2 += render_output(str(3 * n)) + f"The answer is \\boxed{{{3 * n}}}.<end_of_answer>\n"
    return Trajectory(
        problem=problem,
        steps=[TrajectoryStep(text=s1), TrajectoryStep(text=s2, output=str(3 * n))],
        correct=True,
    )


def examples() -> list[SftExample]:
    return [render_sft(trajectory(PROBLEM.replace("4", str(n)), n)) for n in (4, 5)]


def pairs() -> list[PreferencePair]:
    good = render_step("# Step 1: Count the pens.\npens = 3 * 4", False)
    bad = render_step("# Step 1: Add instead.\npens = 3 + 4", False)
    return [
        PreferencePair(
            problem=PROBLEM, prefix=[], chosen=good, rejected=bad, chosen_q=0.9, rejected_q=-0.8
        ),
        PreferencePair(
            problem=PROBLEM,
            prefix=[good],
            chosen=render_step("print(pens)", True),
            rejected=render_step("print(pens + 1)", True),
            chosen_q=1.0,
            rejected_q=-1.0,
        ),
    ]


def small(**kw) -> TrainHParams:
    base = dict(micro_batch_size=2, grad_accum=1, max_length=256, warmup_ratio=0.0, log_every=1)
    return TrainHParams(**{**base, **kw})


# --- pure pieces -------------------------------------------------------------------------------


def test_pairwise_loss_on_known_scores():
    import torch

    pos, neg = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    expected = (-math.log(1 / (1 + math.exp(-1))) - math.log(1 / (1 + math.exp(1)))) / 2
    assert pairwise_loss(pos, neg).item() == pytest.approx(expected, rel=1e-6)
    assert pairwise_loss(torch.tensor([0.3]), torch.tensor([0.3])).item() == pytest.approx(
        math.log(2)
    )
    # the better-ranked pair costs less, and the gradient pushes s+ up and s- down
    p, n = torch.tensor([0.5], requires_grad=True), torch.tensor([-0.5], requires_grad=True)
    loss = pairwise_loss(p, n)
    assert loss.item() < math.log(2)
    loss.backward()
    assert p.grad.item() < 0 < n.grad.item()


def test_lr_schedule_and_step_count():
    hp = TrainHParams(lr=1e-4, warmup_ratio=0.1, min_lr_ratio=0.1, grad_accum=4, epochs=2)
    assert total_steps(10, hp) == 6  # ceil(10/4) per epoch, two epochs
    assert total_steps(10, hp.model_copy(update={"max_steps": 4})) == 4
    lrs = [lr_at(s, 100, hp) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-5) and lrs[9] == pytest.approx(1e-4)  # warm-up
    assert lrs[10] == pytest.approx(1e-4) and lrs[-1] == pytest.approx(1e-5, rel=0.01)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))


def test_length_grouped_batches_cover_everything_once():
    lengths = [(i * 37) % 101 for i in range(50)]
    batches = length_grouped_batches(lengths, 4, seed=0, group=3)
    assert sorted(i for b in batches for i in b) == list(range(50))
    assert all(len(b) <= 4 for b in batches)
    assert batches == length_grouped_batches(lengths, 4, seed=0, group=3)  # deterministic


def test_sft_labels_cover_only_the_solution(tiny_model_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    ex = examples()[0]
    ids, labels = tokenize_example(tok, ex)
    assert len(ids) == len(labels)
    trained = tok.decode([t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE])
    masked = tok.decode([t for t, lab in zip(ids, labels, strict=True) if lab == IGNORE])
    assert trained.startswith("# Step 1: Count the pens.")
    assert "<end_of_step>" in trained and "<end_of_code>" in trained
    assert "\\boxed{12}.<end_of_answer>" in trained
    assert "<output>" not in trained and PROBLEM not in trained
    assert PROBLEM in masked and "<output>\n12\n<end_of_output>\n<answer>" in masked
    # segment-wise tokenization reads back as the whole text
    assert tok.decode(ids) == ex.prompt + ex.completion


def test_trained_loss_sum_is_the_full_logits_loss(tiny_model_path):
    """Logits only where some row is trained give the loss of every logit: rows of different
    lengths and prompts, padding included."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.sft import collate_rows, trained_loss_sum

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    exs = [*examples(), render_sft(trajectory("A much longer problem: " + PROBLEM * 3, 7))]
    batch = collate_rows([tokenize_example(tok, ex) for ex in exs], 0)
    with torch.no_grad():
        loss, n = trained_loss_sum(model, batch)
        reference = model(**batch).loss  # HF's mean over every trained token
    assert n == int((batch["labels"][:, 1:] != IGNORE).sum()) > 0
    assert (loss / n).item() == pytest.approx(reference.item(), rel=1e-5)
    no_labels = {**batch, "labels": torch.full_like(batch["labels"], IGNORE)}
    assert trained_loss_sum(model, no_labels)[1] == 0


# --- real training -----------------------------------------------------------------------------


@pytest.mark.timeout(300)  # ~20 s alone; a busy 2-core machine is much slower
def test_train_sft_loss_falls_and_checkpoint_loads(tiny_model_path, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "policy"
    result = train_sft(tiny_model_path, examples(), out, small(lr=1e-4, epochs=3))
    assert result.optimizer_steps == 3 and result.examples == 2 and result.skipped == 0
    assert all(math.isfinite(x) for x in result.step_losses)
    assert result.step_losses[-1] < result.step_losses[0]  # the same two examples, every step
    assert result.tokens > 0 and result.tokens_per_s > 0
    # a standard HF checkpoint, with its tokenizer and what the run did; nothing left beside it
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    assert json.loads((out / "rstar-train.json").read_text())["optimizer_steps"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy"]
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    enc = tok(examples()[1].prompt, return_tensors="pt")
    with torch.inference_mode():
        gen = model.generate(
            **enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.eos_token_id
        )
    assert gen.shape[1] > enc["input_ids"].shape[1]
    # an existing checkpoint is never overwritten by accident, and the refusal comes first
    with pytest.raises(FileExistsError):
        train_sft(tiny_model_path, examples(), out, small(max_steps=1))


@pytest.mark.timeout(300)
async def test_train_ppm_checkpoint_scores_in_range(tiny_model_path, tmp_path):
    from models.hf_reward import TransformersPPM
    from training.ppm_train import is_ppm, train_ppm

    out = tmp_path / "ppm"
    result = train_ppm(tiny_model_path, pairs(), out, small(lr=1e-4, max_steps=2))
    assert result.kind == "ppm" and result.optimizer_steps == 2 and result.examples == 2
    assert all(math.isfinite(x) for x in result.step_losses)
    # the share of the step's two pairs ranked right: none at first (a fresh head scores every
    # text 0, and a tie is not a win), then whole pairs
    assert result.step_accuracies[0] == 0.0 and len(result.step_accuracies) == 2
    assert result.step_accuracies[1] in (0.0, 0.5, 1.0)
    assert is_ppm(out) and not is_ppm(tiny_model_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ppm"]  # the fresh-head scratch is gone
    ppm = TransformersPPM(str(out))
    try:
        scores = await ppm.score(
            [
                ScoreRequest(PROBLEM, (pairs()[0].chosen,)),
                ScoreRequest(PROBLEM, (pairs()[0].rejected,)),
            ]
        )
    finally:
        ppm.close()
    assert len(scores) == 2 and all(-1.0 <= s <= 1.0 for s in scores)


def test_parent_grouped_batches_keep_a_parents_pairs_together():
    from training.ppm_train import parent_grouped_batches

    parents = [i // 4 for i in range(40)] + [100 + i // 2 for i in range(20)] + [200, 201, 202]
    lengths = [(i * 37) % 101 for i in range(len(parents))]
    batches = parent_grouped_batches(parents, lengths, 4, seed=0, window=5)
    assert sorted(i for b in batches for i in b) == list(range(len(parents)))
    assert sum(len(b) < 4 for b in batches) <= 1  # full batches: every pair weighs the same
    where = {i: n for n, b in enumerate(batches) for i in b}
    for parent in set(parents):  # parents of 4 and 2 pairs fit a batch: never split
        assert len({where[i] for i, p in enumerate(parents) if p == parent}) == 1
    assert batches == parent_grouped_batches(parents, lengths, 4, seed=0, window=5)
    split = parent_grouped_batches([0] * 6, [5] * 6, 4, seed=0)  # more than a batch holds
    assert sorted(map(len, split)) == [2, 4]


@pytest.mark.timeout(300)
async def test_ppm_scores_shared_texts_once_and_learns_which_side_is_chosen(
    tiny_model_path, tmp_path
):
    from transformers import AutoTokenizer

    from models.hf_reward import TransformersPPM
    from models.ppm import ppm_text
    from training.ppm_train import train_ppm

    good = pairs()[0].chosen  # one chosen step against two rejected ones: three texts, not four
    bad = [render_step(f"# Step 1: Guess.\npens = {n}", False) for n in (7, 8)]
    shared = [
        PreferencePair(
            problem=PROBLEM, prefix=[], chosen=good, rejected=b, chosen_q=0.9, rejected_q=-0.8
        )
        for b in bad
    ]
    hp = small(lr=1e-3, epochs=3, pair_batches="parent")
    result = train_ppm(tiny_model_path, shared, tmp_path / "ppm", hp)
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    texts = [ScoreRequest(PROBLEM, (t,)) for t in (good, *bad)]
    per_step = sum(len(tok(ppm_text(r))["input_ids"]) for r in texts)
    assert result.optimizer_steps == 3 and result.tokens == 3 * per_step
    ppm = TransformersPPM(str(tmp_path / "ppm"))
    try:
        chosen, *rejected = await ppm.score(texts)
    finally:
        ppm.close()
    assert all(chosen > r for r in rejected), (chosen, rejected)
    assert "pair_batches" not in small().fingerprint_fields()  # recorded recipes keep theirs
    assert hp.fingerprint_fields()["pair_batches"] == "parent"


# --- LoRA, held-out split, resuming ------------------------------------------------------------


def test_held_out_split_is_stable_and_by_problem():
    from training.common import is_held_out, split_held_out

    keys = [f"gsm8k-train-{i}" for i in range(2000)]
    held = [k for k in keys if is_held_out(k, 0.1)]
    assert 150 < len(held) < 250  # about a tenth
    assert held == [k for k in keys if is_held_out(k, 0.1)]  # the same each run
    assert not any(is_held_out(k, 0.0) for k in keys)
    items = [(k, j) for k in keys[:50] for j in range(3)]  # three items per problem
    train, out = split_held_out(items, lambda x: x[0], 0.3)
    assert len(train) + len(out) == len(items)
    assert not {k for k, _ in train} & {k for k, _ in out}  # a problem is on one side only
    # holding out everything would leave nothing to train on: then nothing is held out
    assert split_held_out(items[:3], lambda x: x[0], 0.999999) == (items[:3], [])


def _weights(path):
    from pathlib import Path

    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


@pytest.mark.timeout(300)
def test_lora_sft_merges_into_a_plain_checkpoint(tiny_model_path, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path / "policy"
    result = train_sft(tiny_model_path, examples(), out, small(lr=1e-3, epochs=3, lora_rank=4))
    assert 0 < result.trainable_params < result.total_params / 50
    assert result.step_losses[-1] < result.step_losses[0]
    # merged: the base model's own tensor names, no adapter files, and the weights moved
    assert not (out / "adapter_config.json").exists()
    after, before = _weights(out), _weights(tiny_model_path)
    assert set(after) <= set(before) and not any("lora" in k for k in after)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(after[q], before[q].float())
    assert torch.equal(
        after["model.embed_tokens.weight"], before["model.embed_tokens.weight"].float()
    )  # not a LoRA target: frozen
    AutoModelForCausalLM.from_pretrained(out)


@pytest.mark.timeout(300)
def test_lora_ppm_trains_its_head_and_reports_held_out_accuracy(tiny_model_path, tmp_path):
    from training.ppm_train import is_ppm, train_ppm

    many = [
        p.model_copy(update={"problem_id": f"p{i}", "problem": f"{PROBLEM} ({i})"})
        for i in range(12)
        for p in pairs()
    ]
    out = tmp_path / "ppm"
    result = train_ppm(
        tiny_model_path, many, out, small(lr=1e-3, max_steps=2, lora_rank=4, holdout_share=0.3)
    )
    assert is_ppm(out)
    h = result.heldout
    assert h is not None and h.metric == "pairwise_accuracy"
    assert h.examples == 2 * h.problems and 0 < h.problems < 12
    assert result.examples + h.examples == len(many)
    assert h.before == 0.5  # a zero head scores every text 0: all ties, counted half
    # trained, the head scores no two texts alike: whole pairs right, no halves for ties
    assert h.after * h.examples == pytest.approx(round(h.after * h.examples))
    # the head is trained in full beside the adapters (576 = the tiny model's hidden size)
    assert "score.weight" in _weights(out)
    assert result.trainable_params > 576


def test_ppm_head_starts_at_zero_and_has_its_own_learning_rate(tiny_model_path, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    from models.ppm import head_parameters, init_ppm_from_backbone
    from training.common import apply_lora, make_optimizer

    path = init_ppm_from_backbone(tiny_model_path, tmp_path / "ppm")
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32)
    assert all(float(p.abs().sum()) == 0.0 for p in head_parameters(model))
    hp = small(lr=2e-4, head_lr=1e-5, lora_rank=4)
    model = apply_lora(model, hp, "SEQ_CLS")
    head = {id(p) for p in head_parameters(model) if p.requires_grad}
    assert head  # peft's trained copy of the head (modules_to_save), found under its wrapping
    groups = make_optimizer(model, hp).param_groups
    for g in groups:
        in_head = {id(p) for p in g["params"]} & head
        assert g["lr_scale"] == (pytest.approx(0.05) if in_head else 1.0)
        assert not in_head or in_head == {id(p) for p in g["params"]}
    # unset, it leaves recipes recorded before it existed as they were
    assert "head_lr" not in small().fingerprint_fields()
    assert small(head_lr=1e-5).fingerprint_fields()["head_lr"] == 1e-5


@pytest.mark.timeout(600)
def test_training_resumes_from_its_saved_state(tiny_model_path, tmp_path, monkeypatch):
    """A run killed after step 2 of 4 and started again ends where an unbroken run ends; a run
    with other settings does not resume from its state."""
    import shutil

    import torch

    from training import common as train_common

    hp = small(lr=1e-3, max_steps=4, checkpoint_every_s=1e-6, lora_rank=4)
    whole = train_sft(tiny_model_path, examples() * 2, tmp_path / "whole", hp)
    assert whole.resumed_from_step == 0

    save = train_common.Resumable.maybe_save
    calls = []

    def save_then_die(self, force=False):
        save(self, force)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the machine went away after step 2's state was saved

    monkeypatch.setattr(train_common.Resumable, "maybe_save", save_then_die)
    out = tmp_path / "policy"
    with pytest.raises(KeyboardInterrupt):
        train_sft(tiny_model_path, examples() * 2, out, hp)
    assert not out.exists() and (tmp_path / ".policy.resume" / "fingerprint").exists()
    monkeypatch.setattr(train_common.Resumable, "maybe_save", save)

    # the saved state, copied beside two other outputs: the same settings resume from it there
    # too, other settings (another learning rate) start over
    for name in ("same", "other"):
        shutil.copytree(tmp_path / ".policy.resume", tmp_path / f".{name}.resume")
    same = train_sft(tiny_model_path, examples() * 2, tmp_path / "same", hp)
    assert same.resumed_from_step == 2
    other_hp = hp.model_copy(update={"lr": 2e-3})
    other = train_sft(tiny_model_path, examples() * 2, tmp_path / "other", other_hp)
    assert other.resumed_from_step == 0 and other.optimizer_steps == 4

    resumed = train_sft(tiny_model_path, examples() * 2, out, hp)
    assert resumed.resumed_from_step == 2 and resumed.optimizer_steps == 4
    assert resumed.step_losses == pytest.approx(whole.step_losses, rel=1e-4)
    a, b = _weights(out), _weights(tmp_path / "whole")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert not (tmp_path / ".policy.resume").exists()  # gone once the checkpoint is in place


@pytest.mark.timeout(300)
def test_a_ppm_trained_on_raw_logits_saves_its_head_divided_by_the_scale(tiny_model_path, tmp_path):
    """The same run (seeded) at two logit scales trains the same weights, the loss reading raw
    logits; the saved head is divided by the scale, in the merged model and in the adapter."""
    import torch
    from safetensors.torch import load_file

    from training.ppm_train import train_ppm

    heads = {}
    for scale in (1.0, 4.0):
        out = tmp_path / f"ppm-{scale}"
        train_ppm(
            tiny_model_path,
            pairs(),
            out,
            small(lr=1e-3, max_steps=1, lora_rank=4, logit_scale=scale),
        )
        adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
        (key,) = [k for k in adapter if k.endswith("score.weight")]
        heads[scale] = (_weights(out)["score.weight"], adapter[key].float())
    (merged1, adapter1), (merged4, adapter4) = heads[1.0], heads[4.0]
    assert merged1.abs().sum() > 0
    assert torch.allclose(merged4 * 4, merged1, atol=1e-6)
    assert torch.allclose(adapter4 * 4, adapter1, atol=1e-2)
