"""A PPM in minutes: a linear head fitted on the frozen policy's last-token features.

Our PPM is a `*ForSequenceClassification` whose `score` layer reads the final hidden state at
the last token. With the body frozen at the policy's own weights, training that PPM is fitting
that one layer: embed every text once on vLLM's pooling runner (last-token pooling, no
normalisation: the very vector the `score` layer reads), then fit the head to the preference
pairs by the pairwise loss on raw logits, with the weight decay chosen on the problems held out
of the training pairs. Trying other label rules or decays then takes seconds, where a LoRA PPM
takes hours on CPU, and the features of a text are computed once (a cache keyed by the policy's
recipe and the text).

The checkpoint is the policy with that head, which every engine loads as any PPM. Its weights
are scaled so that tanh(logit) spreads over the training texts (the reference divides raw
values by 5 before tanh for the same reason): the score layer has no bias, so the scale is
exact.

    python -m training.ppm_head --policy docs/measured/evolution/r1/policy \\
        --trees docs/measured/evolution/r1/generate/trees.jsonl \\
        --dev-trees docs/measured/evolution/dev/trees.jsonl \\
        --out docs/measured/evolution/r1-head/ppm
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from evaluation.jsonl import read_records
from evaluation.ppm_pairs import PairReport, pair_report, tree_dev_pairs
from models.ppm import ppm_text
from search.extract import LabelRules, PreferencePair, extract
from search.tree import Tree
from training.common import HEAD_RECORD, is_held_out, model_recipe

log = logging.getLogger("training.ppm_head")

# RSTAR_FEATURE_CACHE, else beside the model cache (models/default_model.py)
FEATURES_CACHE = Path(
    os.environ.get("RSTAR_FEATURE_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rstar" / "features"
)


# --- pairs ---------------------------------------------------------------------------------------


def _trees(path: str | Path) -> Iterator[tuple[str, Tree]]:
    for rec in read_records(path, ("tree",)):
        yield str(rec.get("id")), Tree.from_json(json.dumps(rec["tree"]))


def training_pairs(trees: str | Path, rules: LabelRules) -> list[PreferencePair]:
    return [p for pid, t in _trees(trees) for p in extract(t, rules, pid).pairs]


def _sides(p: PreferencePair) -> tuple[str, str]:
    return ppm_text(p.chosen_request()), ppm_text(p.rejected_request())


# --- features ------------------------------------------------------------------------------------


class FeatureStore:
    """Last-token features of texts under one policy, on disk: one .npy per text, named by the
    sha256 of the text, in a folder named by the policy's recipe."""

    def __init__(self, policy: str, root: Path = FEATURES_CACHE) -> None:
        self.policy = policy
        self.dir = root / hashlib.sha256(model_recipe(policy).encode()).hexdigest()[:16]

    def _path(self, text: str) -> Path:
        return self.dir / f"{hashlib.sha256(text.encode()).hexdigest()}.npy"

    def missing(self, texts: Sequence[str]) -> list[str]:
        return sorted({t for t in texts if not self._path(t).exists()})

    def load(self, texts: Sequence[str]) -> Any:
        import numpy as np

        return np.stack([np.load(self._path(t)) for t in texts])

    def fill(self, texts: Sequence[str], batch: int = 32) -> None:
        """Embed what is not stored yet. Sorted texts put shared prefixes side by side, where
        vLLM's prefix cache reuses them."""
        import numpy as np

        todo = self.missing(texts)
        if not todo:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        llm = _embedder(self.policy)
        from evaluation.progress import CountProgress

        with CountProgress("embedding texts", len(todo)) as progress:
            for i in range(0, len(todo), batch):
                chunk = todo[i : i + batch]
                outs = llm.embed(chunk, use_tqdm=False)
                for text, out in zip(chunk, outs, strict=True):
                    vec = np.asarray(out.outputs.embedding, dtype=np.float32)
                    tmp = self._path(text).with_suffix(".tmp.npy")
                    np.save(tmp, vec)
                    os.replace(tmp, self._path(text))
                progress(len(chunk))


def _embedder(policy: str) -> Any:
    """vLLM's pooling runner over the policy: the final hidden state at the last token, as is."""
    from vllm import LLM
    from vllm.config import PoolerConfig
    from vllm.platforms import current_platform

    from models.settings import ModelSettings
    from models.vllm_engine import engine_dtype, set_cpu_env

    settings = ModelSettings()
    on_cpu = current_platform.is_cpu()
    if on_cpu:
        set_cpu_env(settings, os.environ)
    return LLM(
        model=policy,
        runner="pooling",
        convert="embed",
        pooler_config=PoolerConfig(seq_pooling_type="LAST", use_activation=False),
        dtype=engine_dtype(settings.dtype, on_cpu),
        enforce_eager=on_cpu,
        enable_prefix_caching=True,
        max_model_len=settings.max_model_len,
        seed=0,
    )


# --- the head ------------------------------------------------------------------------------------


class Head(BaseModel):
    """w·h over the raw last-token feature h (what the `score` layer computes)."""

    weight: list[float]
    decay: float
    scale: float  # the weight is divided by it before saving: logits of unit spread

    def logits(self, feats: Any) -> Any:
        import numpy as np

        return np.asarray(feats, dtype=np.float64) @ np.asarray(self.weight, dtype=np.float64)


def fit_head(
    feats: Any, pairs: Sequence[tuple[int, int]], decay: float, steps: int = 200
) -> list[float]:
    """Minimise mean −log σ(w·(h⁺ − h⁻)) + decay·|w|² over standardised features (full batch,
    L-BFGS); return w for the raw features."""
    import torch

    x = torch.as_tensor(feats, dtype=torch.float64)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    i = torch.as_tensor([a for a, _ in pairs])
    j = torch.as_tensor([b for _, b in pairs])
    diff = z[i] - z[j]
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Any:
        opt.zero_grad()
        loss = torch.nn.functional.softplus(-(diff @ w)).mean() + decay * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    # w·((h − mean)/std) = (w/std)·h − const: the constant cancels in every pair, and the
    # score layer has no bias to hold it
    return (w.detach() / std).tolist()


def centre(weight: list[float], feats: Any) -> list[float]:
    """`weight` with its mean logit over `feats` moved to 0, so that tanh does not saturate.
    The score layer has no bias; a transformer's last hidden state has a few dimensions that are
    large and nearly constant across texts, and one of them does a bias's work: the dimension
    whose mean is largest against its spread takes the offset."""
    import numpy as np

    x = np.asarray(feats, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    mean, std = x.mean(0), x.std(0) + 1e-12
    k = int(np.argmax(np.abs(mean) / std))
    w[k] -= float((x @ w).mean()) / mean[k]
    return w.tolist()


def _index(texts: list[str], pairs: Sequence[PreferencePair]) -> list[tuple[int, int]]:
    at = {t: k for k, t in enumerate(texts)}
    return [(at[c], at[r]) for c, r in map(_sides, pairs)]


def _scores(head: Head, feats: Any, idx: list[tuple[int, int]]) -> list[tuple[float, float]]:
    logits = head.logits(feats)
    return [(float(logits[a]), float(logits[b])) for a, b in idx]


class HeadReport(BaseModel):
    policy: str
    rules: LabelRules
    train_pairs: int
    train_problems: int
    decays: dict[str, float]  # decay → pairwise accuracy on the held-out training problems
    decay: float
    heldout: PairReport | None  # None: too few problems to hold any out
    dev: PairReport | None = None


def train_head(
    policy: str,
    trees: str | Path,
    rules: LabelRules,
    dev_trees: str | Path | None = None,
    decays: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1),
    holdout_share: float = 0.1,
    per_kind: int = 8,
    store: FeatureStore | None = None,
) -> tuple[Head, HeadReport]:
    """Fit the head on `trees`' pairs under `rules`, the decay chosen on the tenth of their
    problems held out; report it there and, with `dev_trees`, on their dev pairs."""
    import numpy as np

    store = store or FeatureStore(policy)
    pairs = training_pairs(trees, rules)
    dev = tree_dev_pairs(dev_trees, per_kind) if dev_trees else []
    held = [p for p in pairs if is_held_out(p.problem_id or p.problem, holdout_share)]
    fit = [p for p in pairs if not is_held_out(p.problem_id or p.problem, holdout_share)]
    if not pairs:
        raise ValueError(f"{trees}: no preference pairs to fit a head on")
    if not fit or not held:  # too few problems to hold any out: the middle decay, unchecked
        fit, held, decays = pairs, [], [decays[len(decays) // 2]]
    texts = sorted({t for p in (*pairs, *dev) for t in _sides(p)})
    store.fill(texts)
    feats = store.load(texts)

    fit_idx, held_idx = _index(texts, fit), _index(texts, held)
    tried: dict[str, float] = {}
    decay = decays[0]
    if held:
        best = -1.0
        for d in decays:
            head = Head(weight=fit_head(feats, fit_idx, d), decay=d, scale=1.0)
            acc = pair_report(held, _scores(head, feats, held_idx)).overall.accuracy
            tried[str(d)] = acc
            log.info("decay %g: held-out pairwise accuracy %.3f", d, acc)
            if acc > best:
                best, decay = acc, d
    # the chosen decay, refitted on every training pair
    weight = centre(fit_head(feats, _index(texts, pairs), decay), feats)
    spread = float(np.std(feats @ np.asarray(weight, dtype=np.float64))) or 1.0
    head = Head(weight=weight, decay=decay, scale=spread)
    held_head = Head(weight=centre(fit_head(feats, fit_idx, decay), feats), decay=decay, scale=1.0)
    report = HeadReport(
        policy=policy,
        rules=rules,
        train_pairs=len(pairs),
        train_problems=len({p.problem_id for p in pairs}),
        decays=tried,
        decay=decay,
        heldout=pair_report(held, _scores(held_head, feats, held_idx)) if held else None,
        dev=pair_report(dev, _scores(head, feats, _index(texts, dev))) if dev else None,
    )
    return head, report


def dev_report(
    store: FeatureStore,
    pairs: Sequence[PreferencePair],
    dev: Sequence[PreferencePair],
    decay: float,
) -> PairReport:
    """A head fitted on `pairs` at `decay`, reported on `dev`: a label or decay variant in
    seconds once the features are stored (benchmarks/ppm_head_variants.py)."""
    texts = sorted({t for p in (*pairs, *dev) for t in _sides(p)})
    if missing := store.missing(texts):
        raise ValueError(f"{len(missing)} texts have no stored features: fit a head on them first")
    feats = store.load(texts)
    head = Head(
        weight=centre(fit_head(feats, _index(texts, pairs), decay), feats), decay=decay, scale=1.0
    )
    return pair_report(dev, _scores(head, feats, _index(texts, dev)))


def stored_scores(
    head: Head, store: FeatureStore, pairs: Sequence[PreferencePair]
) -> list[tuple[float, float]]:
    """(chosen, rejected) scores of a fitted head on pairs whose texts are stored: two rounds'
    heads compared on the dev pairs without a model (benchmarks/ppm_dev_paired.py)."""
    texts = sorted({t for p in pairs for t in _sides(p)})
    if missing := store.missing(texts):
        raise ValueError(
            f"{len(missing)} texts have no stored features under {store.policy}: fit a head on "
            "them first (python -m training.ppm_head --dev-trees …)"
        )
    return _scores(head, store.load(texts), _index(texts, pairs))


def load_head(ckpt: str | Path) -> tuple[Head, HeadReport | None]:
    data = json.loads((Path(ckpt) / HEAD_RECORD).read_text())
    report = HeadReport.model_validate(data["report"]) if data.get("report") else None
    return Head.model_validate(data["head"]), report


def save_ppm(policy: str, head: Head, out: str | Path, report: HeadReport | None = None) -> Path:
    """The policy with the fitted head as its `score` layer, scaled to unit spread; the head
    (and its report) beside it, which is all a round commits of it."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from models.ppm import init_ppm_from_backbone

    out = Path(out)
    init_ppm_from_backbone(policy, out)
    model = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32)
    w = torch.tensor(head.weight, dtype=torch.float32) / head.scale
    with torch.no_grad():
        model.score.weight.copy_(w.reshape(1, -1))
    model.save_pretrained(out, safe_serialization=True)
    record = {"head": head.model_dump(), "report": report.model_dump() if report else None}
    (out / HEAD_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    return out


def _print(report: HeadReport) -> None:
    rows = [
        (name, rep)
        for name, rep in (("held-out", report.heldout), ("dev", report.dev))
        if rep is not None
    ]
    for name, rep in rows:
        for kind, r in [("all", rep.overall), *rep.by_kind.items()]:
            lo, hi = r.ci95_by_problem
            print(
                f"{name:>8} {kind:>8}: {r.accuracy:.3f} [{lo:.3f}, {hi:.3f}] "
                f"{r.pairs} pairs, {r.problems} problems"
            )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.ppm_head",
        description="Fit a PPM head on the frozen policy's features (see the module docstring).",
    )
    ap.add_argument("--policy", required=True, help="the policy directory (the PPM's body)")
    ap.add_argument("--trees", required=True, help="a round's trees.jsonl: the training pairs")
    ap.add_argument("--dev-trees", help="trees of problems no model trained on: the dev pairs")
    ap.add_argument(
        "--out",
        help="write the PPM checkpoint here; a folder holding only its head record (what is "
        "committed) gets its weights rebuilt from it, in seconds",
    )
    ap.add_argument("--report", help="write the report (JSON) here")
    ap.add_argument("--per-kind", type=int, default=8, help="dev pairs of each kind a problem")
    for name, field in LabelRules.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
        elif name == "q":
            ap.add_argument(
                "--label-q", dest="q", choices=["outcomes", "search"], default="outcomes"
            )
        else:
            conv = float if "float" in str(field.annotation) else int
            ap.add_argument(
                flag,
                type=lambda s, c=conv: None if s == "none" else c(s),
                default=field.default,
                help=field.description,
            )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.out and (Path(args.out) / HEAD_RECORD).exists():
        if (Path(args.out) / "config.json").exists():
            print(f"{args.out}: already fitted (delete it to fit again)")
            return 0
        head, old = load_head(args.out)  # committed without its weights: rebuild them
        save_ppm(args.policy, head, args.out, old)
        print(f"PPM rebuilt from its head record in {args.out}")
        return 0
    rules = LabelRules(**{k: getattr(args, k) for k in LabelRules.model_fields})
    head, report = train_head(
        args.policy, args.trees, rules, args.dev_trees, per_kind=args.per_kind
    )
    _print(report)
    if args.report:
        Path(args.report).write_text(report.model_dump_json(indent=1) + "\n")
    if args.out:
        print(f"PPM written to {save_ppm(args.policy, head, args.out, report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
