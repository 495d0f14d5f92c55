"""The self-evolution table and plot from what `scripts/self_evolution.sh` wrote.

    python -m benchmarks.self_evolution_table [--evolution docs/measured/evolution]
        [--base docs/measured/search] [--budget 4] [--plot accuracy_by_round.png]
        [--plot-tokens accuracy_at_equal_tokens.png]

Rows: the untrained default (docs/measured/search: greedy and the searches on the same test
problems), then each round's policy: greedy (the round's own eval), self-consistency, best-of-N
and MCTS at the budget (best-of-N and MCTS read the round's PPM where it has one). Each row is
compared with the same algorithm one round earlier on the problems both ran: won / lost and the
exact two-sided sign test (McNemar's exact test) on those that differ. Then what each round
trained on: data counts, training loss, the held-out SFT loss and PPM pairwise accuracy.
`--plot-tokens` draws the equal-token runs and the PPMs on the dev set by round, with intervals.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from evaluation.records import LABELS, read_results, run_figures
from evaluation.stats import sign_test, wilson_interval
from training.common import HEAD_RECORD, TRAINING_RECORD

SHOWN = ("greedy", "self_consistency", "best_of_n", "mcts")  # the algorithms the table shows
ROUNDS = ("r0", "r1", "r2", "r3")
STAGE_NAMES = {
    "base": "untrained default",
    "r0": "round 0: SFT on reference solutions",
    "r1": "round 1: terminal-guided MCTS",
    "r2": "round 2: PPM-augmented MCTS",
    "r3": "round 3: PPM-augmented MCTS",
}


SHORT_NAMES = {
    "base": "untrained",
    "r0": "round 0",
    "r1": "round 1",
    "r2": "round 2",
    "r3": "round 3",
}
# the PPM each round's searches read (rN-tok); round 1's LoRA PPM predates committed adapters
PPM_DIRS = {"r1": "r1-head/ppm", "r2": "r2/ppm", "r3": "r3/ppm"}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _results(path: Path, tokens: bool = False) -> dict[tuple[str, int], dict[str, dict[str, Any]]]:
    """(algorithm, budget) → problem id → its record, from a results.jsonl, failed searches,
    budgets stopped once settled and text-step runs left out; with `tokens`, the runs under a
    token budget, by (algorithm, token budget)."""
    out: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for (alg, budget, max_tokens, rule, fmt, pid), r in read_results(path).items():
        kept = rule == "budget" and fmt == "code"
        if not r.get("error") and bool(max_tokens) == tokens and kept:
            out.setdefault((alg, max_tokens or budget), {})[pid] = r
    return out


def stage_runs(stage: str, evolution: Path, base: Path) -> list[Path]:
    """The results.jsonl files a stage's rows come from."""
    if stage == "base":
        return [base / "gsm8k-greedy" / "results.jsonl", base / "gsm8k-search" / "results.jsonl"]
    return [
        evolution / stage / "eval" / "new" / "results.jsonl",
        evolution / f"{stage}-search" / "results.jsonl",
    ]


def table(
    evolution: Path, base: Path, budget: int, running: list[str] | None = None
) -> list[dict[str, Any]]:
    """The rows; a round's run with fewer problems than the untrained default's of the same
    algorithm is still running: left out, and named in `running` if given."""
    rows: list[dict[str, Any]] = []
    full: dict[str, int] = {}  # algorithm → problems the untrained default ran
    previous: dict[str, tuple[str, dict[str, bool]]] = {}  # algorithm → its last stage, results
    for stage in ("base", *ROUNDS):
        found: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
        for f in stage_runs(stage, evolution, base):
            for key, res in _results(f).items():  # of two runs of one algorithm, the larger
                if len(res) > len(found.get(key, {})):
                    found[key] = res
        has_ppm = any(
            (evolution / stage / "ppm" / record).exists()
            for record in (TRAINING_RECORD, HEAD_RECORD)
        )
        for alg in SHOWN:
            recs = found.get((alg, 1 if alg == "greedy" else budget))
            if not recs:
                continue
            if stage == "base":
                full[alg] = len(recs)
            elif len(recs) < full.get(alg, 0):
                if running is not None:
                    running.append(
                        f"{SHORT_NAMES[stage]} {LABELS[alg]}: {len(recs)} of {full[alg]}"
                    )
                continue
            res = {i: bool(r["correct"]) for i, r in recs.items()}
            row = {
                "stage": stage,
                "algorithm": alg,
                **run_figures(list(recs.values())),
                "ppm": has_ppm and alg in ("best_of_n", "mcts"),
            }
            if alg in previous:
                before, prev_res = previous[alg]
                row["vs_previous"] = sign_test(res, prev_res)
                row["vs_stage"] = before
            previous[alg] = (stage, res)
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], budget: int) -> str:
    lines = [
        "| model | algorithm | accuracy | correct / n | vs the row one round earlier: won / lost, "
        "sign-test p | reaches an answer | mean generated tokens |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        alg = LABELS[r["algorithm"]] + ("" if r["algorithm"] == "greedy" else f" @ {budget}")
        if r["algorithm"] in ("best_of_n", "mcts"):
            alg += " (PPM)" if r["ppm"] else " (no PPM)"
        vs = "–"
        if "vs_previous" in r:
            w, lo, p = r["vs_previous"]
            vs = f"{w} / {lo}, p = {p:.2f}"
            stages = ("base", *ROUNDS)
            if stages.index(r["stage"]) - stages.index(r["vs_stage"]) > 1:  # a round has no row
                vs = f"vs {SHORT_NAMES[r['vs_stage']]}: {vs}"
        lines.append(
            f"| {STAGE_NAMES[r['stage']]} | {alg} | {100 * r['correct'] / r['n']:.1f} % "
            f"| {r['correct']} / {r['n']} | {vs} | {100 * r['answered'] / r['n']:.1f} % "
            f"| {r['mean_tokens']:.0f} |"
        )
    return "\n".join(lines)


def round_facts(evolution: Path) -> str:
    """What each round trained on, from its manifest and its checkpoints' training records."""
    lines = []
    for name in ROUNDS:
        m = _read(evolution / name / "manifest.json")
        if m is None:
            continue
        data = m.get("data", {})
        lines.append(f"{name} ({evolution / name}, {m.get('status')}):")
        if b := data.get("bootstrap"):
            lines.append(f"  bootstrap: {b.get('rows')} rows, {b.get('verified')} verified")
        if g := data.get("generate"):
            keys = ("problems", "finished", "solved", "tokens")
            lines.append("  generate: " + ", ".join(f"{k} {g[k]}" for k in keys if k in g))
        if x := data.get("extract"):
            keys = ("problems_solved", "sft_examples", "step_pairs", "final_pairs", "pairs")
            lines.append("  extract: " + ", ".join(f"{k} {x[k]}" for k in keys if k in x))
        for phase, what in (("sft", "policy"), ("ppm", "ppm")):
            rec = m.get("phases", {}).get(phase, {})
            counts = rec.get("counts", {})
            if rec.get("status") == "complete" and counts.get("method") == "head":
                lines.append(
                    f"  {phase}: a linear head on the policy's frozen features, "
                    f"{counts['pairs']} pairs from {counts['problems']} problems (decay "
                    f"{counts['decay']:g}, by held-out pairwise accuracy "
                    f"{counts['heldout_accuracy']:.3f})"
                )
                continue
            meta = _read(evolution / name / what / TRAINING_RECORD)
            if rec.get("status") != "complete" or meta is None:
                if rec.get("status"):
                    lines.append(f"  {phase}: {rec['status']} ({rec.get('reason') or ''})")
                continue
            losses = meta.get("step_losses") or [0.0]
            text = (
                f"  {phase}: {meta['examples']} examples, {meta['optimizer_steps']} steps, "
                f"{meta['tokens']} tokens at {meta['tokens_per_s']:.0f} tok/s "
                f"(LoRA rank {meta['hparams'].get('lora_rank', 0) or '–'}), "
                f"loss {losses[0]:.3f} → {losses[-1]:.3f}"
            )
            if h := meta.get("heldout"):
                text += (
                    f"; held out ({h['examples']} from {h['problems']} problems): {h['metric']} "
                    f"{h['before']:.3f} → {h['after']:.3f}"
                )
            lines.append(text)
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, budget: int) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    stages = [s for s in ("base", *ROUNDS) if any(r["stage"] == s for r in rows)]
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for i, alg in enumerate(SHOWN):
        pts = [
            (stages.index(r["stage"]), r["correct"] / r["n"], r["n"])
            for r in rows
            if r["algorithm"] == alg
        ]
        if not pts:
            continue
        label = LABELS[alg] + ("" if alg == "greedy" else f" @ {budget}")
        dx = (i - 1.5) * 0.03  # apart, so equal accuracies do not hide each other
        ax.plot(
            [p[0] + dx for p in pts], [p[1] for p in pts], marker="o", color=f"C{i}", label=label
        )
    ax.set_xticks(range(len(stages)), [STAGE_NAMES[s].split(":")[0] for s in stages])
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("accuracy")
    ax.set_title(
        "GSM8K test, 0.5B default: greedy on the first 200, searches on the first 100", fontsize=9
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _cell(recs: dict[str, Any] | None) -> str:
    if not recs:
        return "–"
    n = len(recs)
    c = sum(bool(r["correct"]) for r in recs.values())
    tokens = sum(r["tokens"] for r in recs.values()) / n
    return f"{100 * c / n:.1f} % ({c}/{n}) · {tokens:.0f} tok"


def _versus(ours: dict[str, Any] | None, theirs: dict[str, Any] | None) -> str:
    if not ours or not theirs:
        return "–"
    w, lo, p = sign_test(
        {i: bool(r["correct"]) for i, r in ours.items()},
        {i: bool(r["correct"]) for i, r in theirs.items()},
    )
    return f"{w} / {lo}, p = {p:.2f}"


def _dev_report(evolution: Path, stage: str) -> dict[str, Any] | None:
    """A round's PPM on the dev set: its own report, or the one its head record carries."""
    dev = _read(evolution / f"{stage}-ppm-dev.json")
    if dev is None and stage in PPM_DIRS:
        head = _read(evolution / PPM_DIRS[stage] / HEAD_RECORD) or {}
        dev = (head.get("report") or {}).get("dev")
    return dev or None


def _pairs(row: dict[str, Any] | None) -> str:
    if not row:
        return "–"
    low, high = row["ci95_by_problem"]
    return f"{row['accuracy']:.3f} [{low:.3f}, {high:.3f}] ({row['pairs']})"


def equal_token_table(evolution: Path) -> str:
    """Markdown, by round and token budget: greedy and each search (accuracy, correct / n, mean
    generated tokens), MCTS against self-consistency and best-of-N on the problems both ran
    (won / lost, exact sign test); then each round's PPM on the dev set (pairwise accuracy, 95 %
    bootstrap interval over problems, pairs), terminal and step pairs apart."""
    lines = [
        "| round | budget | greedy | self-consistency | best-of-N | MCTS | MCTS vs "
        "self-consistency (won / lost) | MCTS vs best-of-N (won / lost) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    ppm = ["| round | terminal pairs | step pairs | all pairs |", "|---|---:|---:|---:|"]
    for stage in ROUNDS:
        runs = _results(evolution / f"{stage}-tok" / "results.jsonl", tokens=True)
        greedy = _results(evolution / stage / "eval" / "new" / "results.jsonl").get(("greedy", 1))
        for i, tokens in enumerate(sorted({t for _, t in runs}) or ([0] if greedy else [])):
            sc, bon, mcts = (runs.get((a, tokens)) for a in SHOWN[1:])
            budget = f"{tokens} tokens" if tokens else "–"
            lines.append(
                f"| {SHORT_NAMES[stage]} | {budget} | {_cell(greedy) if i == 0 else ''} | "
                f"{_cell(sc)} | {_cell(bon)} | {_cell(mcts)} | {_versus(mcts, sc)} | "
                f"{_versus(mcts, bon)} |"
            )
        if dev := _dev_report(evolution, stage):
            kinds = dev.get("by_kind", {})
            ppm.append(
                f"| {SHORT_NAMES[stage]} | {_pairs(kinds.get('terminal'))} | "
                f"{_pairs(kinds.get('step'))} | {_pairs(dev.get('overall'))} |"
            )
    return "\n".join([*lines, "", *ppm])


Point = tuple[str, float, float, float]  # round, accuracy, 95 % interval
DEV_PANEL = "the round's PPM on the dev set"


def equal_token_points(evolution: Path) -> dict[str, dict[str, list[Point]]]:
    """What `plot_equal_tokens` draws, panel → line → points: each token budget's searches by
    round (Wilson intervals; greedy for reference), then the PPMs on the dev set (bootstrap by
    problem). A run not yet over every problem the budget's fullest run covers is left out."""
    runs = {s: _results(evolution / f"{s}-tok" / "results.jsonl", tokens=True) for s in ROUNDS}
    greedy = {
        s: _results(evolution / s / "eval" / "new" / "results.jsonl").get(("greedy", 1))
        for s in ROUNDS
    }
    panels: dict[str, dict[str, list[Point]]] = {}
    for tokens in sorted({t for r in runs.values() for _, t in r}):
        full = max(len(r) for s in ROUNDS for (_, t), r in runs[s].items() if t == tokens)
        lines: dict[str, list[Point]] = {}
        for alg in SHOWN:
            for s in ROUNDS:
                recs = greedy[s] if alg == "greedy" else runs[s].get((alg, tokens))
                if recs and len(recs) >= full:
                    c = sum(bool(r["correct"]) for r in recs.values())
                    lines.setdefault(LABELS[alg], []).append(
                        (s, c / len(recs), *wilson_interval(c, len(recs)))
                    )
        panels[f"GSM8K test, first {full}: {tokens} generated tokens"] = lines
    dev: dict[str, list[Point]] = {}
    for kind in ("terminal", "step"):
        for s in ROUNDS:
            row = ((_dev_report(evolution, s) or {}).get("by_kind") or {}).get(kind)
            if row:
                dev.setdefault(f"{kind} pairs", []).append(
                    (s, row["accuracy"], *row["ci95_by_problem"])
                )
    if dev:
        panels[DEV_PANEL] = dev
    return panels


def plot_equal_tokens(evolution: Path, path: Path) -> Path:
    """Accuracy by round at each token budget and the PPMs' dev accuracy, with their intervals
    as bars (the PPM panel with the 0.70 target)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    panels = equal_token_points(evolution)
    stages = [
        s
        for s in ROUNDS
        if any(p[0] == s for lines in panels.values() for pts in lines.values() for p in pts)
    ]
    fig = Figure(figsize=(4 * max(1, len(panels)), 4), layout="constrained")
    for ax, (title, lines) in zip(
        fig.subplots(1, max(1, len(panels)), squeeze=False)[0], panels.items(), strict=False
    ):
        for i, (label, pts) in enumerate(lines.items()):
            ax.errorbar(
                [stages.index(s) + (i - 1.5) * 0.06 for s, *_ in pts],
                [a for _, a, _, _ in pts],
                yerr=[[a - lo for _, a, lo, _ in pts], [hi - a for _, a, _, hi in pts]],
                marker="o", capsize=3, color=f"C{i}", label=label,
            )  # fmt: skip
        if title == DEV_PANEL:
            ax.axhline(0.7, color="grey", linestyle="--", linewidth=1, label="target 0.70")
            ax.set_ylabel("pairwise accuracy")
        else:
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
            ax.set_ylabel("accuracy")
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(len(stages)), [SHORT_NAMES[s] for s in stages])
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evolution", type=Path, default=Path("docs/measured/evolution"))
    ap.add_argument("--base", type=Path, default=Path("docs/measured/search"))
    ap.add_argument("--budget", type=int, default=4)
    ap.add_argument("--plot", type=Path, help="draw accuracy by round (PNG)")
    ap.add_argument(
        "--plot-tokens", type=Path, help="draw the equal-token runs and the PPMs by round (PNG)"
    )
    args = ap.parse_args()
    running: list[str] = []
    rows = table(args.evolution, args.base, args.budget, running)
    print(markdown(rows, args.budget))
    if running:
        print(f"\nnot yet complete (left out): {'; '.join(running)}")
    print()
    print(equal_token_table(args.evolution))
    print()
    print(round_facts(args.evolution))
    if args.plot and rows:
        print(f"\nplot: {plot(rows, args.plot, args.budget)}")
    if args.plot_tokens:
        print(f"plot: {plot_equal_tokens(args.evolution, args.plot_tokens)}")


if __name__ == "__main__":
    main()
