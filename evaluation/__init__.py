"""The evaluation core: problem sets, graded runs of algorithms × budgets, their reports.

Below it all: `problems.py` (the data), `jsonl.py` (resumable JSONL), `records.py` (what a run
writes and the figures built from it); above those `report.py` (plot, table) and `progress.py`
(bars); `run.py` (the run) on top.
"""

from evaluation.problems import DataError, Problem, file_sha256, load_problems
from evaluation.progress import EvalProgress
from evaluation.records import (
    LABELS,
    PLOT,
    REPORT,
    RESULTS,
    RunKey,
    Tally,
    build_report,
    run_figures,
    tree_summary,
)
from evaluation.report import plot, table
from evaluation.run import (
    TOKEN_BUDGET_ROLLOUTS,
    EvalError,
    InProcessSolver,
    Outcome,
    Solver,
    check_out_dir,
    evaluate,
    parse_budget,
    plan,
)
from search import ALGORITHMS

__all__ = [
    "ALGORITHMS",
    "LABELS",
    "PLOT",
    "REPORT",
    "RESULTS",
    "TOKEN_BUDGET_ROLLOUTS",
    "DataError",
    "EvalError",
    "EvalProgress",
    "InProcessSolver",
    "Outcome",
    "Problem",
    "RunKey",
    "Solver",
    "Tally",
    "build_report",
    "check_out_dir",
    "evaluate",
    "file_sha256",
    "load_problems",
    "parse_budget",
    "plan",
    "plot",
    "run_figures",
    "table",
    "tree_summary",
]
