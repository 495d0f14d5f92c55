"""The evaluation core: problem sets, graded runs of algorithms × budgets, their reports."""

from evaluation.problems import DataError, Problem, file_sha256, load_problems
from evaluation.report import EvalProgress, plot, table
from evaluation.run import (
    ALGORITHMS,
    LABELS,
    PLOT,
    REPORT,
    RESULTS,
    EvalError,
    InProcessSolver,
    Outcome,
    RunKey,
    Solver,
    Tally,
    build_report,
    check_out_dir,
    evaluate,
    plan,
    tree_summary,
)

__all__ = [
    "ALGORITHMS",
    "LABELS",
    "PLOT",
    "REPORT",
    "RESULTS",
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
    "plan",
    "plot",
    "table",
    "tree_summary",
]
