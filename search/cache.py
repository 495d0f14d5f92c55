"""Keys and records of the expansion cache, so a repeated or continued problem skips work.

An expansion is identified by everything that determines its children: the model versions
(the caller's `namespace`), the normalised problem, the path of step texts from the root, how
many candidates were asked for, the sampling/execution settings and the step format. A node is
named by its text plus its rank among earlier siblings with the same text (only chains sampled
without de-duplication have such twins), so replaying a cached tree reaches the same keys.
"""

from __future__ import annotations

import hashlib
import json

from search.config import SearchConfig
from search.tree import Node, Tree

CACHE_FORMAT = 1  # bump when the record layout or the step format changes

# Node fields a cached child carries; statistics and gold-dependent judgements are per search.
RECORD_FIELDS = (
    "status",
    "final",
    "text",
    "reasoning",
    "code",
    "output",
    "error",
    "answer_text",
    "answer",
    "tokens",
    "prm_score",
)


def normalize_problem(problem: str) -> str:
    return " ".join(problem.split())


def _config_digest(config: SearchConfig, temperature: float, dedup: bool) -> dict:
    return {
        "temperature": temperature,
        "top_p": config.top_p if temperature > 0 else 1.0,
        "step_max_tokens": config.step_max_tokens,
        "answer_max_tokens": config.answer_max_tokens,
        "prompt_style": config.prompt_style,
        "max_depth": config.max_depth,
        "exec_timeout_s": config.exec_timeout_s,
        "output_clip_chars": config.output_clip_chars,
        "seed": config.seed,
        "dedup": dedup,
    }


def node_names(tree: Tree, node: Node) -> list[str]:
    """The path from the root to `node`, each step as text#rank-among-same-text-siblings."""
    names = []
    for n in tree.path(node):
        siblings = tree.children(tree.nodes[n.parent]) if n.parent is not None else []
        rank = sum(1 for s in siblings if s.id < n.id and s.text == n.text)
        names.append(f"{n.text}#{rank}")
    return names


def expansion_key(
    namespace: str,
    tree: Tree,
    node: Node,
    n: int,
    config: SearchConfig,
    temperature: float,
    dedup: bool,
    score: str = "steps",
) -> str:
    """`score` apart from "steps" (the Expander's: every step scored) keys its own entries:
    their steps may lack the scores another algorithm reads."""
    parts = [
        CACHE_FORMAT,
        namespace,
        normalize_problem(tree.problem),
        node_names(tree, node),
        n,
        _config_digest(config, temperature, dedup),
    ]
    if score != "steps":
        parts.append(score)
    if config.step_format != "code":  # another format's steps are other steps (code keys stay)
        parts.append({"step_format": config.step_format, "delimiter": config.step_delimiter})
    if node.children:  # a node sampled again (chains started in waves) draws new samples
        parts.append(["after", len(node.children)])
    payload = json.dumps(
        parts,
        ensure_ascii=False,
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def to_record(node: Node) -> dict:
    return {f: getattr(node, f) for f in RECORD_FIELDS}


def from_record(record: dict) -> dict:
    """Node fields from a cached record (unknown keys dropped, so old entries stay readable)."""
    fields = {f: record[f] for f in RECORD_FIELDS if f in record}
    if fields.get("status") not in ("open", "terminal", "invalid"):
        raise ValueError(f"bad cached status {fields.get('status')!r}")
    return fields
