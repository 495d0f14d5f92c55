"""The self-evolution table (issue 6) from the folders `scripts/self_evolution.sh` wrote.

    python -m benchmarks.self_evolution_table runs/evolution [--plot accuracy_by_round.png]

Rows: the untrained default model (few-shot greedy), then each round's policy greedy and MCTS
at the eval budget; then what each round trained on and how long its phases took.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# (label, its report.json files relative to the runs folder; those present are read)
SOURCES = (
    ("default model, no training", ("base/report.json",)),
    ("round 0: bootstrap SFT",
     ("r0/eval/new/report.json", "r0-greedy/report.json", "r0-mcts/report.json")),
    ("round 1: MCTS data, new policy + PPM",
     ("r1/eval/new/report.json", "r1-greedy/report.json", "r1-mcts/report.json")),
)  # fmt: skip


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def rows(runs: Path) -> list[dict[str, Any]]:
    """One row per model and run; where two reports ran the same one (a round's own eval and a
    later, larger `rstar eval`), the one over more problems."""
    best: dict[tuple, dict[str, Any]] = {}
    for label, rels in SOURCES:
        for rel in rels:
            for r in _rows(label, runs / rel):
                key = (label, r["algorithm"], r["budget"], r["ppm"])
                if key not in best or r["n"] > best[key]["n"]:
                    best[key] = r
    return list(best.values())


def _rows(label: str, path: Path) -> list[dict[str, Any]]:
    report = _read(path)
    if report is None:
        return []
    models = report.get("models") or {}
    out = []
    for run in report.get("runs", []):
        out.append(
            {
                "model": label,
                "engine": models.get("policy_engine"),
                # greedy never reads the PPM: with one loaded it is the same run as without
                "ppm": bool(models.get("reward_model")) and run["algorithm"] != "greedy",
                "algorithm": run["algorithm"],
                "budget": run["budget"],
                "accuracy": run["accuracy"],
                "correct": run["correct"],
                "n": run["n"],
                "answered": run.get("answered"),
                "mean_tokens": run["mean_tokens"],
                "errors": run.get("errors", 0),
                "records": {r["id"]: bool(r.get("correct")) for r in run.get("records", [])},
            }
        )
    return out


def _on_subset(r: dict[str, Any], ids: set[str]) -> str:
    """Accuracy on the problems the smallest run covered (MCTS runs on fewer problems)."""
    hits = [r["records"][i] for i in ids if i in r["records"]]
    if len(hits) < len(ids):
        return "–"
    return f"{100 * sum(hits) / len(hits):.1f} % ({sum(hits)} / {len(hits)})"


def markdown(table: list[dict[str, Any]]) -> str:
    # the smallest run's problems: every row is also scored on them, for a like-for-like column
    smallest = min(table, key=lambda r: r["n"], default=None)
    ids = set(smallest["records"]) if smallest else set()
    lines = [
        f"| model | algorithm | accuracy | correct / n | on the first {len(ids)} "
        "| reached an answer | mean generated tokens | engine |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in table:
        alg = "greedy" if r["algorithm"] == "greedy" else f"{r['algorithm']} @ {r['budget']}"
        if r["algorithm"] != "greedy":
            alg += " (PPM)" if r["ppm"] else " (no PPM: answer agreement)"
        acc = "–" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f} %"
        tokens = "–" if r["mean_tokens"] is None else f"{r['mean_tokens']:.0f}"
        answered = "–" if r["answered"] is None else f"{r['answered']} / {r['n']}"
        lines.append(
            f"| {r['model']} | {alg} | {acc} | {r['correct']} / {r['n']} | {_on_subset(r, ids)} "
            f"| {answered} | {tokens} | {r['engine'] or '–'} |"
        )
    return "\n".join(lines)


# counts worth a line per phase (the manifest holds all of them)
FACTS = {
    "generate": ("rows", "verified", "problems", "solved", "tokens"),
    "extract": ("problems_solved", "sft_examples", "step_pairs", "final_pairs",
                "mean_steps_per_trajectory"),
    "sft": ("examples", "optimizer_steps", "tokens", "tokens_per_s", "first_loss", "final_loss"),
    "ppm": ("examples", "optimizer_steps", "tokens_per_s", "first_loss", "final_loss"),
}  # fmt: skip


def round_facts(runs: Path) -> str:
    lines = []
    for name in ("r0", "r1"):
        manifest = _read(runs / name / "manifest.json")
        if manifest is None:
            continue
        lines.append(f"{name} ({runs / name}):")
        for phase, info in manifest.get("phases", {}).items():
            if not isinstance(info, dict):
                continue
            counts = info.get("counts") or {}
            shown = ", ".join(
                f"{k} {round(counts[k], 3) if isinstance(counts[k], float) else counts[k]}"
                for k in FACTS.get(phase, ())
                if k in counts
            )
            why = f" ({info['reason']})" if info.get("reason") else ""
            lines.append(
                f"  {phase}: {info.get('status')} in {info.get('seconds') or 0:.0f} s{why}"
                + (f"; {shown}" if shown else "")
            )
    return "\n".join(lines)


def plot(table: list[dict[str, Any]], path: Path) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    labels = [
        f"{r['model'].split(':')[0]}\n{r['algorithm']}"
        + ("" if r["algorithm"] == "greedy" else f"@{r['budget']}")
        for r in table
    ]
    ys = [r["accuracy"] or 0.0 for r in table]
    bars = ax.bar(range(len(ys)), ys, color=[f"C{i % 10}" for i in range(len(ys))])
    ax.bar_label(
        bars,
        labels=[f"{100 * y:.1f}% of {r['n']}" for y, r in zip(ys, table, strict=True)],
        fontsize=8,
    )
    ax.set_xticks(range(len(ys)), labels, fontsize=8)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("accuracy")
    ax.set_title("GSM8K test (the first n problems): accuracy by round", fontsize=10)
    fig.savefig(path, dpi=120)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, help="RUNS of scripts/self_evolution.sh")
    ap.add_argument("--plot", type=Path, help="also draw the table as a bar chart (PNG)")
    args = ap.parse_args()
    table = rows(args.runs)
    print(markdown(table))
    print()
    print(round_facts(args.runs))
    if args.plot and table:
        print(f"\nplot: {plot(table, args.plot)}")


if __name__ == "__main__":
    main()
