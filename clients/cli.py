"""The `rstar` command line.

rstar solve "What is 12*7?"            in-process: default model, real sandbox, MCTS
rstar solve --algorithm best_of_n --rollouts 8 --json "..."
rstar solve --url http://127.0.0.1:8000 "What is 12*7?"    against a running server
rstar serve [--host H] [--port P]      the HTTP server (same as python -m server)
rstar eval --data gsm8k_test.jsonl --limit 50 --algorithms greedy,mcts --budgets 4,16
                                       accuracy against tokens (report.json, plot) [--url]
rstar eval ... --budgets 16,16:confident   the same budget spent in full and stopped once settled
rstar eval-ppm --ppm DIR --pairs ppm_pairs.jsonl
                                       a PPM's pairwise accuracy on preference pairs

`rstar COMMAND --help` lists a command's flags. Settings not given as flags come from RSTAR_*
variables; a bad one is named in one line (exit status 2) before any engine starts, with the
traceback only under --debug.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar, get_args

import httpx

from evaluation.progress import SearchBar
from models.settings import RewardKind
from models.step_tag_prm import Aggregation
from search import Algorithm, Budget, SearchConfig, SearchSettings
from search.formats import STEP_FORMATS
from search.settle import StopWhen
from search.steps import PROMPT_STYLES
from server.preflight import (
    ConfigError,
    arg_type,
    debug_wanted,
    env_name,
    load_settings,
    unknown_variables,
)
from server.settings import SearchEnv

T = TypeVar("T")

# Quiet engines unless asked (the CLI shows its own progress), and keep their logs off stdout,
# which belongs to the answer (and to --json).
for _var, _val in (
    ("VLLM_LOGGING_LEVEL", "ERROR"),
    ("VLLM_LOGGING_STREAM", "ext://sys.stderr"),
    ("TRANSFORMERS_VERBOSITY", "error"),
    ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
    ("TQDM_DISABLE", "1"),  # the CLI draws its own progress
    ("TOKENIZERS_PARALLELISM", "false"),
    ("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning"),  # engine processes
):
    os.environ.setdefault(_var, _val)


def _add_solve(sub: Any) -> None:
    p = sub.add_parser("solve", help="solve one problem in-process and print the trajectory")
    p.add_argument("problem", help="the problem text, or - to read it from stdin")
    p.add_argument("--url", help="solve on a running rstar server instead of in-process")
    p.add_argument("--api-key", help="the server's API key (default: RSTAR_API_KEY)")
    p.add_argument("--algorithm", default="mcts", choices=list(get_args(Algorithm)))
    b = p.add_argument_group("budget")
    b.add_argument(
        "--rollouts",
        type=arg_type(Budget, "rollouts"),
        default=8,
        help="MCTS rollouts / samples (default 8)",
    )
    b.add_argument(
        "--max-tokens",
        type=arg_type(Budget, "max_tokens"),
        help="generated tokens, all calls together",
    )
    b.add_argument(
        "--time-limit", type=arg_type(Budget, "time_limit_s", float), help="wall-clock seconds"
    )
    b.add_argument(
        "--stop-when",
        choices=list(get_args(StopWhen)),
        help="stop early once the answer is settled: unbeatable (the leading answer can no "
        "longer be overtaken) or confident (a Beta posterior puts it ahead with probability "
        "--settle-confidence); default budget: spend it all (with --url: the server's default)",
    )
    _add_settle_confidence(b)
    _add_search_args(p.add_argument_group("search"))
    m = p.add_argument_group("models (default: RSTAR_* settings)")
    _add_model_args(m)
    m.add_argument(
        "--step-format",
        choices=STEP_FORMATS,
        help="the steps the policy writes: code (rStar-Math's) or text (plain steps split at a "
        "blank line, in the model's chat template); default RSTAR_STEP_FORMAT, else code",
    )
    o = p.add_argument_group("output")
    o.add_argument("--answer", help="gold answer to check the result against (not used to search)")
    o.add_argument("--json", action="store_true", help="print the result as JSON")
    o.add_argument("--tree", action="store_true", help="include the whole tree in --json")
    o.add_argument(
        "--html",
        metavar="PATH",
        help="also write the search tree as a self-contained page (open it offline)",
    )


def _add_settle_confidence(group: Any) -> None:
    default = Budget.model_fields["settle_confidence"].default
    group.add_argument(
        "--settle-confidence",
        type=arg_type(Budget, "settle_confidence", float),
        metavar="P",
        help=f"the probability the confident rule stops at, > 0.5 and < 1 (default {default})",
    )


def _settle_budget(stop_when: str | None, settle_confidence: float | None) -> dict[str, Any]:
    """The stop rule's budget fields that were given (the rest take their defaults)."""
    given = {"stop_when": stop_when, "settle_confidence": settle_confidence}
    return {k: v for k, v in given.items() if v is not None}


# the search settings a flag sets (the rest come from RSTAR_SEARCH_*, else their defaults)
SEARCH_FLAGS = (
    "candidates",
    "max_expansions",
    "max_depth",
    "parallel_rollouts",
    "c_uct",
    "temperature",
    "vote_top_k",
    "seed",
)


def _search_flag(field: str) -> str:
    return "--" + SearchSettings.FLAGS.get(field, field).replace("_", "-")


def _add_search_args(s: Any) -> None:
    for name in SEARCH_FLAGS:
        info = SearchSettings.model_fields[name]
        kind = float if float in (info.annotation, *get_args(info.annotation)) else int
        flag = _search_flag(name)
        default = "unset" if info.default is None else info.default
        env = env_name(SearchEnv, f"search.{name}")
        s.add_argument(
            flag,
            dest=name,
            type=arg_type(SearchSettings, name, kind),
            metavar=flag[2:].upper().replace("-", "_"),
            help=f"{info.description} (default {default}, or {env})",
        )


def _add_model_args(m: Any) -> None:
    m.add_argument("--engine", choices=["vllm", "transformers", "remote"], help="policy engine")
    m.add_argument("--model", help="policy model path or hub id ('default' = embedded)")
    m.add_argument("--policy-url", help="OpenAI-compatible server for --engine remote")
    m.add_argument("--ppm", help="reward model path or hub id (default: none → agreement)")
    m.add_argument("--ppm-engine", choices=["transformers", "vllm", "remote"])
    m.add_argument(
        "--ppm-kind",
        choices=get_args(RewardKind),
        help="ppm: our one-label PPM; step_tag_prm: a Qwen2.5-Math-PRM-style PRM",
    )
    m.add_argument(
        "--prm-aggregation",
        choices=get_args(Aggregation),
        help="a step-tag PRM's score of a path: its last step's, its worst step's or their "
        "product (default RSTAR_PRM_AGGREGATION, else last)",
    )
    m.add_argument("--prompt-style", choices=PROMPT_STYLES)
    m.add_argument(
        "--step-delimiter",
        help="the text format's step end, \\n for a newline (default RSTAR_STEP_DELIMITER, "
        "else a blank line)",
    )


def _at_least(low: int) -> Any:
    """An argparse `type`: a whole number ≥ low."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be ≥ {low}, got {text}")
        return value

    parse.__name__ = "int"
    return parse


def _share(text: str) -> float:
    """An argparse `type`: a fraction strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be > 0 and < 1, got {text}")
    return value


def _csv(kind: type) -> Any:
    def parse(text: str) -> list:
        try:
            return [kind(x.strip()) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s") from None

    return parse


def _add_eval(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="accuracy of algorithms × budgets over a JSONL problem set (report and plot)",
        description="Search every problem with every algorithm at every budget (greedy once), "
        "grade the answers against the gold ones, and write report.json, results.jsonl "
        "(as problems finish) and accuracy_vs_tokens.png into --out.",
    )
    p.add_argument(
        "--data", required=True, help="JSONL: 'problem' (or 'question') and 'answer' per line"
    )
    p.add_argument("--limit", type=_at_least(0), help="only the first N problems (after --offset)")
    p.add_argument("--offset", type=_at_least(0), default=0, help="skip the first N problems")
    p.add_argument(
        "--algorithms",
        type=_csv(str),
        default="greedy,self_consistency,best_of_n,mcts",
        help="comma-separated (default: all four)",
    )
    p.add_argument(
        "--budgets",
        type=_csv(str),
        default="1,4,8",
        help="rollouts / samples, or generated tokens per search as 650tok (as many rollouts "
        "as fit: algorithms compared at equal tokens), comma-separated (default 1,4,8; greedy "
        "runs once); a suffix :confident or :unbeatable stops that budget's searches once the "
        "answer is settled (16,16:confident compares spending it all with stopping early)",
    )
    p.add_argument(
        "--concurrency",
        type=_at_least(1),
        default=4,
        help="problems searched at once on the one engine (default 4)",
    )
    p.add_argument(
        "--step-format",
        dest="step_formats",
        type=_csv(str),
        help="the steps the policy writes, code, text or code,text (runs of their own); default "
        "RSTAR_STEP_FORMAT, else code",
    )
    p.add_argument("--url", help="evaluate a running rstar server (its search settings apply)")
    p.add_argument("--api-key", help="the server's API key (default: RSTAR_API_KEY)")
    p.add_argument(
        "--max-tokens", type=arg_type(Budget, "max_tokens"), help="generated tokens per search"
    )
    p.add_argument(
        "--time-limit",
        type=arg_type(Budget, "time_limit_s", float),
        help="wall-clock seconds per search",
    )
    _add_settle_confidence(p)
    _add_search_args(p.add_argument_group("search (in-process)"))
    _add_model_args(p.add_argument_group("models, in-process (default: RSTAR_* settings)"))
    o = p.add_argument_group("output")
    o.add_argument("--out", help="output folder (default runs/eval-<timestamp>)")
    o.add_argument(
        "--resume",
        action="store_true",
        help="keep the results already in --out and run only the rest",
    )


def _add_eval_ppm(sub: Any) -> None:
    p = sub.add_parser(
        "eval-ppm",
        help="a PPM's pairwise accuracy on preference pairs (overall and per kind, 95%% CI)",
        description="Score both sides of every pair (search.extract.PreferencePair JSONL, as a "
        "round writes to data/ppm_pairs.jsonl) and report the share ranked right.",
    )
    p.add_argument("--ppm", required=True, help="the PPM: a directory or hub id")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pairs", help="JSONL of preference pairs")
    src.add_argument(
        "--trees",
        help="a round's trees (JSONL, searched with gold answers): score the dev pairs drawn "
        "from them, terminal (a right trajectory against a wrong one) and step (siblings whose "
        "outcomes are all right against all wrong), at most --per-kind of each per problem",
    )
    p.add_argument(
        "--per-kind",
        type=_at_least(1),
        default=8,
        help="with --trees: pairs of each kind per problem (default 8)",
    )
    p.add_argument("--ppm-engine", choices=["transformers", "vllm"], default="transformers")
    p.add_argument(
        "--held-out-share",
        type=_share,
        help="only the pairs of the problems a trainer with this --holdout-share held out",
    )
    p.add_argument(
        "--limit", type=_at_least(0), help="only the first N pairs (after --held-out-share)"
    )
    p.add_argument("--batch-size", type=_at_least(1), default=32, help="pairs per scoring call")
    p.add_argument("--out", help="also write the report as JSON here")


def _eval_ppm(args: argparse.Namespace) -> int:
    """`rstar eval-ppm`: read and check the pairs before an engine starts, then score them."""
    from pydantic import ValidationError

    from evaluation.ppm_pairs import pair_report, score_pairs
    from evaluation.problems import is_held_out
    from models import ModelSettings, load_reward_model
    from models.checks import check_model
    from search.extract import PreferencePair

    try:
        if args.trees:
            from evaluation.ppm_pairs import tree_dev_pairs

            pairs = tree_dev_pairs(args.trees, args.per_kind)
        else:
            lines = Path(args.pairs).read_text(encoding="utf-8").split("\n")
            pairs = [PreferencePair.model_validate_json(x) for x in lines if x.strip()]
        if args.held_out_share is not None:
            pairs = [
                p for p in pairs if is_held_out(p.problem_id or p.problem, args.held_out_share)
            ]
        pairs = pairs[: args.limit] if args.limit is not None else pairs
        if not pairs:
            raise ValueError(f"no preference pairs to score in {args.pairs or args.trees}")
        check_model(args.ppm, "--ppm", ppm=True)  # a ModelCheckError (ValueError) names the flag
    except ValidationError as e:
        print(
            f"rstar eval-ppm: {args.pairs or args.trees}: {str(e).splitlines()[0]}", file=sys.stderr
        )
        return 2
    except (OSError, ValueError) as e:
        print(f"rstar eval-ppm: {e}", file=sys.stderr)
        return 2
    from evaluation.progress import CountProgress

    model = load_reward_model(ModelSettings(ppm_model=args.ppm, ppm_engine=args.ppm_engine))
    start = time.monotonic()
    try:
        with CountProgress("scoring pairs", len(pairs)) as progress:
            scores = run_until_killed(score_pairs(model, pairs, args.batch_size, progress))
    finally:
        getattr(model, "close", lambda: None)()
    report = pair_report(pairs, scores)
    rows = [("all", report.overall), *report.by_kind.items()]
    for name, r in rows:
        (lo, hi), (blo, bhi) = r.ci95, r.ci95_by_problem
        print(
            f"{name:>8}: {r.accuracy:.3f} [{blo:.3f}, {bhi:.3f} by problem; Wilson {lo:.3f}, "
            f"{hi:.3f}] on {r.pairs} pairs of {r.problems} problems (ties {r.ties}, margin "
            f"{r.mean_margin:+.3f})"
        )
    print(f"{len(pairs)} pairs in {time.monotonic() - start:.0f} s")
    if args.out:
        info = {
            "ppm": args.ppm,
            "pairs": args.pairs,
            "trees": args.trees,
            "per_kind": args.per_kind if args.trees else None,
            "held_out_share": args.held_out_share,
            "limit": args.limit,
            "engine": args.ppm_engine,
        }
        Path(args.out).write_text(json.dumps({**info, **report.model_dump()}, indent=1) + "\n")
    return 0


def _add_serve(sub: Any) -> None:
    from server.settings import ServerSettings

    p = sub.add_parser(
        "serve",
        help="run the HTTP server (settings from RSTAR_* variables)",
        description="The HTTP server, as python -m server: settings from RSTAR_* "
        "variables, checked before the engines start.",
    )
    p.add_argument("--host", help="listen address (default RSTAR_HOST or 127.0.0.1)")
    p.add_argument(
        "--port", type=arg_type(ServerSettings, "port"), help="port (default RSTAR_PORT or 8000)"
    )


def _search_config(
    args: argparse.Namespace, settings: Any, step_format: str | None = None
) -> SearchConfig:
    """The search settings (flags over RSTAR_SEARCH_* variables) in the policy's step format
    (or `step_format`), delimiter and prompt style."""
    given = {f: v for f in SEARCH_FLAGS if (v := getattr(args, f)) is not None}
    names = {f"search.{f}": _search_flag(f) for f in given}
    search = load_settings(SearchEnv, names, search=given).search
    return search.config(
        settings.resolved_prompt_style(),
        step_format=step_format or settings.step_format,
        step_delimiter=settings.step_delimiter,
    )


# ModelSettings fields → the flags that set them (an error names the flag when it was given)
_MODEL_FLAGS = {
    "policy_engine": "engine",
    "policy_model": "model",
    "policy_url": "policy_url",
    "ppm_model": "ppm",
    "ppm_engine": "ppm_engine",
    "ppm_kind": "ppm_kind",
    "prm_aggregation": "prm_aggregation",
    "prompt_style": "prompt_style",
    "step_format": "step_format",  # rstar solve's; rstar eval takes several (step_formats)
    "step_delimiter": "step_delimiter",
}


def _settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    pairs = {field: getattr(args, dest, None) for field, dest in _MODEL_FLAGS.items()}
    return {k: v for k, v in pairs.items() if v is not None}


def _model_settings(args: argparse.Namespace, step_formats: list[str] | None = None) -> Any:
    """The model settings (flags over RSTAR_* variables), checked before any engine starts:
    a ConfigError names the flag or variable that cannot work (for each of `step_formats`, the
    formats rstar eval runs, when given)."""
    from models import ModelSettings
    from server.preflight import check_models, check_step_format

    overrides = _settings_overrides(args)
    names = {f: "--" + _MODEL_FLAGS[f].replace("_", "-") for f in overrides}
    settings = load_settings(ModelSettings, names, **overrides)
    check_models(settings, names)
    if getattr(args, "step_formats", None):
        names["step_format"] = "--step-format"
    for fmt in step_formats or ():
        check_step_format(settings.model_copy(update={"step_format": fmt}), names)
    return settings


def _default_step_format() -> str:
    """RSTAR_STEP_FORMAT, checked (else code)."""
    from models import ModelSettings

    return load_settings(ModelSettings).step_format


def _sandbox_settings() -> Any:
    from sandbox import SandboxSettings
    from server.preflight import check_sandbox

    settings = load_settings(SandboxSettings)
    check_sandbox(settings)
    return settings


def _read_problem(args: argparse.Namespace) -> str | None:
    problem = sys.stdin.read() if args.problem == "-" else args.problem
    if not problem.strip():
        print("rstar solve: the problem is empty", file=sys.stderr)
        return None
    return problem


def _solve_remote(args: argparse.Namespace) -> int:
    """The same command against a server: its budget caps and search settings apply."""
    from clients.client import RstarClient, RstarError
    from server.protocol import SolveResponse

    problem = _read_problem(args)
    if problem is None:
        return 2
    budget = {
        "rollouts": args.rollouts,
        "max_tokens": args.max_tokens,
        "time_limit_s": args.time_limit,
        **_settle_budget(args.stop_when, args.settle_confidence),
    }
    progress = SearchBar(args.rollouts if args.algorithm != "greedy" else 1)
    result = None
    try:
        with RstarClient(args.url, api_key=args.api_key) as client, progress:
            for event in client.stream(
                problem,
                algorithm=args.algorithm,
                budget=budget,
                answer=args.answer,
                return_tree=args.tree or bool(args.html),
                step_format=args.step_format,
            ):
                if isinstance(event, SolveResponse):
                    result = event
                else:
                    progress(event)
    except RstarError as e:
        print(f"rstar solve: the server refused: {e}", file=sys.stderr)
        return 2
    except httpx.HTTPError as e:
        print(f"rstar solve: cannot reach {args.url}: {e}", file=sys.stderr)
        return 2
    if result is None:
        print("rstar solve: the server closed the stream without a result", file=sys.stderr)
        return 1
    if args.html:
        _write_html(args.html, result.model_dump(mode="json"))
    if args.json:
        print(result.model_dump_json(indent=2, exclude_none=not args.tree))
    else:
        _print_result(problem, result, args.answer, result.correct)
    return 0


async def _solve(args: argparse.Namespace) -> int:
    from models import load_models
    from sandbox import create_sandbox
    from search import Components, run_search
    from search.grading import default_grader

    problem = _read_problem(args)
    if problem is None:
        return 2
    settings = _model_settings(args)
    sandbox_settings = _sandbox_settings()
    budget = Budget(
        rollouts=args.rollouts,
        max_tokens=args.max_tokens,
        time_limit_s=args.time_limit,
        **_settle_budget(args.stop_when, args.settle_confidence),
    )
    config = _search_config(args, settings)
    progress = SearchBar(args.rollouts if args.algorithm != "greedy" else 1)
    t0 = time.monotonic()
    progress.status(f"starting the sandbox and the {settings.policy_engine} policy engine…")
    sandbox = create_sandbox(sandbox_settings)
    models = None
    try:
        sandbox.start()
        models = load_models(settings)
        progress.status(f"ready in {time.monotonic() - t0:.0f}s; searching ({args.algorithm})")
        components = Components(models.policy, sandbox, models.reward_model, progress=progress)
        with progress:
            result = await run_search(args.algorithm, problem, components, budget, config)
    finally:
        if models is not None:
            await models.aclose()
        sandbox.close()
    correct = None
    if args.answer is not None and result.answer is not None:
        correct = default_grader().equal(args.answer, result.answer)
    if args.json:
        data = result.model_dump(mode="json", exclude=None if args.tree else {"tree"})
        data["step_format"] = config.step_format
        data["checked_against"] = args.answer
        data["checked_correct"] = correct
        data["sandbox_runs_total"] = sandbox.stats.runs
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        _print_result(problem, result, args.answer, correct, config.step_format)
    if args.html:
        _write_html(args.html, result.model_dump(mode="json") | {"correct": correct})
    return 0


def _write_html(path: str, result: dict[str, Any]) -> None:
    from server.ui_page import standalone_page

    Path(path).write_text(standalone_page(result), encoding="utf-8")
    print(f"rstar solve: the search tree is in {path} (open it in a browser)", file=sys.stderr)


def _eval(args: argparse.Namespace) -> int:
    """`rstar eval`: check the data, the output folder and the settings (cheapest first, all
    before anything starts), then evaluate."""
    import evaluation as ev

    try:
        problems = ev.load_problems(args.data, offset=args.offset, limit=args.limit)
        # stated in every run's key (and sent to a server), not left to a default
        formats = args.step_formats or [_default_step_format()]
        keys = ev.plan(args.algorithms, args.budgets, formats)
    except (ev.DataError, ValueError) as e:
        print(f"rstar eval: {e}", file=sys.stderr)
        return 2
    out = Path(args.out or f"runs/eval-{time.strftime('%Y%m%d-%H%M%S')}")
    data = Path(args.data)
    info: dict[str, Any] = {
        "data": {
            "path": str(data.resolve()),
            "name": data.stem,
            "sha256": ev.file_sha256(data),
            "offset": args.offset,
            "limit": args.limit,
        },
        "config": {
            "algorithms": args.algorithms,
            "budgets": args.budgets,
            "concurrency": args.concurrency,
            "max_tokens": args.max_tokens,
            "time_limit_s": args.time_limit,
            "settle_confidence": args.settle_confidence,
            "step_formats": formats,
            "url": args.url,
        },
    }
    try:
        ev.check_out_dir(out, info, args.resume)
        if not args.url:
            args.model_settings = _model_settings(args, formats)
            args.search_configs = {
                fmt: _search_config(args, args.model_settings, fmt) for fmt in formats
            }
            args.search_config = args.search_configs[formats[0]]
            args.sandbox_settings = _sandbox_settings()
            info["config"]["search"] = args.search_config.model_dump(mode="json")
            ev.check_out_dir(out, info, args.resume)  # now with the search settings
    except (ev.EvalError, ConfigError) as e:
        print(f"rstar eval: {e}", file=sys.stderr)
        return 2
    return run_until_killed(_eval_run(args, problems, keys, info, out))


async def _eval_run(
    args: argparse.Namespace, problems: list, keys: list, info: dict[str, Any], out: Path
) -> int:
    """Build the components (or a client) once for the whole run, evaluate, print the table."""
    import evaluation as ev

    progress = ev.EvalProgress(keys, len(problems))
    run = functools.partial(
        ev.evaluate,
        problems,
        keys,
        out_dir=out,
        concurrency=args.concurrency,
        resume=args.resume,
        progress=progress,
        info=info,
    )
    try:
        if args.url:
            from clients.client import AsyncRstarClient
            from clients.eval import RemoteSolver

            info["config"]["search"] = "the server's settings"
            async with AsyncRstarClient(args.url, api_key=args.api_key) as client:
                try:
                    health = await client.ready()
                except httpx.HTTPError as e:
                    print(f"rstar eval: cannot reach {args.url}: {e}", file=sys.stderr)
                    return 2
                if health.status != "ok":
                    print(f"rstar eval: {args.url} is not ready: {health.checks}", file=sys.stderr)
                    return 2
                solver = RemoteSolver(
                    client,
                    max_tokens=args.max_tokens,
                    time_limit_s=args.time_limit,
                    settle_confidence=args.settle_confidence,
                )
                with progress:
                    report = await run(solver)
        else:
            from models import load_models, model_versions
            from sandbox import create_sandbox
            from search import Components

            settings, config = args.model_settings, args.search_config
            versions = {
                "policy": settings.policy_model,
                "policy_engine": settings.policy_engine,
                "reward_model": settings.ppm_model,
                "versions": model_versions(settings),
            }
            progress.status(f"starting the sandbox and the {settings.policy_engine} engine…")
            sandbox = create_sandbox(args.sandbox_settings)
            models = None
            try:
                sandbox.start()
                models = load_models(settings)
                components = Components(models.policy, sandbox, models.reward_model)
                solver = ev.InProcessSolver(
                    components,
                    config,
                    max_tokens=args.max_tokens,
                    time_limit_s=args.time_limit,
                    settle_confidence=args.settle_confidence,
                    models=versions,
                    configs=args.search_configs,
                )
                progress.status(f"evaluating {len(keys)} runs × {len(problems)} problems")
                with progress:
                    report = await run(solver)
            finally:
                if models is not None:
                    await models.aclose()
                sandbox.close()
    except ev.EvalError as e:
        print(f"rstar eval: {e} (finished problems are in {out})", file=sys.stderr)
        return 2
    from rich.console import Console

    Console().print(ev.table(report))
    print(f"report: {out / ev.REPORT}\nplot: {out / ev.PLOT}")
    return 0


def run_until_killed(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, with a kill (SIGTERM) taken as asyncio takes ^C: the run's task is
    cancelled, so its cleanup runs (the finished problems kept, the report written, the
    engines' processes shut down rather than left behind), then KeyboardInterrupt."""

    async def run() -> T:
        task, loop, killed = asyncio.current_task(), asyncio.get_running_loop(), []
        assert task is not None

        def kill() -> None:
            killed.append(True)
            task.cancel()

        # only the main thread receives signals (the tests call main() from others)
        handles = threading.current_thread() is threading.main_thread()
        if handles:
            loop.add_signal_handler(signal.SIGTERM, kill)
        try:
            return await coro
        except asyncio.CancelledError:
            if killed:
                raise KeyboardInterrupt from None
            raise
        finally:
            if handles:
                loop.remove_signal_handler(signal.SIGTERM)

    return asyncio.run(run())


def _print_result(
    problem: str, result: Any, gold: str | None, correct: bool | None, step_format: str = "code"
) -> None:
    """A SearchResult (in-process) or a SolveResponse (from a server, which says its format),
    for people."""
    step_format = getattr(result, "step_format", step_format)
    from rich.console import Console
    from rich.panel import Panel
    from rich.syntax import Syntax

    from server.openai_api import without_step_label

    con = Console()
    con.print(Panel(problem.strip(), title="problem", expand=False))
    if not result.steps:
        con.print("[yellow]No finished trajectory within the budget.[/yellow]")
    for i, step in enumerate(result.steps, 1):
        score = f"PPM {step.prm_score:+.2f}, " if step.prm_score is not None else ""
        con.print(
            f"[bold]step {i}[/bold] [dim]({score}Q {step.q:+.2f}, {step.visits} visits)[/dim]"
        )
        if reasoning := without_step_label(step.reasoning):
            con.print(f"  {reasoning}")
        if step.code:
            con.print(Syntax(step.code, "python", theme="ansi_dark", padding=(0, 2)))
        # a code step's output is its whole program's, shown once; a text step's, its block's
        shown = step_format == "text" or i == len(result.steps)
        if step.output is not None and shown:
            con.print(f"  [dim]output:[/dim] {step.output}")
    if result.answer is not None:
        line = f"[bold green]answer: {result.answer}[/bold green]  (score {result.score:+.2f}"
        con.print(line + f", ranked by {result.reward_source.replace('_', ' ')})")
    else:
        con.print("[bold red]no answer[/bold red]")
    if result.reward_source == "agreement":
        con.print("[dim]no PPM configured: terminals are scored by agreement among answers[/dim]")
    if len(result.alternatives) > 1:
        alts = ", ".join(f"{a.answer} ×{a.count}" for a in result.alternatives)
        con.print(f"[dim]answers found: {alts}[/dim]")
    if gold is not None:
        verdict = {True: "[green]correct[/green]", False: "[red]wrong[/red]", None: "no answer"}
        con.print(f"checked against {gold}: {verdict[correct]}")
    u = result.usage
    saved = f", about {u.tokens_saved} tokens saved" if u.tokens_saved else ""
    con.print(
        f"[dim]{u.rollouts} rollouts, {u.tokens} tokens, {u.policy_calls} policy calls, "
        f"{u.sandbox_runs} sandbox runs, {u.reward_calls} reward calls, {u.elapsed_s:.1f}s; "
        f"stopped by {result.stopped_by}{saved}[/dim]"
    )


DEBUG_HELP = "errors with their traceback (as RSTAR_LOG_LEVEL=DEBUG)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rstar", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_solve, _add_serve, _add_eval, _add_eval_ppm):
        add(sub)
    for p in sub.choices.values():  # after the command too; SUPPRESS keeps `rstar --debug CMD`
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    from models import ModelUnavailable
    from sandbox import SandboxUnavailable
    from server.preflight import report

    args = build_parser().parse_args(argv)
    debug = debug_wanted(args.debug)
    prog = f"rstar {args.command}"
    if args.command != "serve":  # the server warns in its own logs
        for line in unknown_variables():
            print(f"{prog}: warning: {line}", file=sys.stderr)
    try:
        if args.command == "serve":
            from server.__main__ import serve

            return serve(args.host, args.port, debug, prog=prog)
        if args.command == "eval":
            return _eval(args)
        if args.command == "eval-ppm":
            return _eval_ppm(args)
        if args.url:
            return _solve_remote(args)
        return run_until_killed(_solve(args))
    except (ConfigError, ModelUnavailable, SandboxUnavailable) as e:
        report(prog, e, json_logs=False, debug=debug)
        return 2
    except ValidationError as e:  # a model built from flags and settings together
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        report(prog, ConfigError(loc, err.get("input"), err["msg"]), json_logs=False, debug=debug)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
