"""Expanding nodes, shared by every algorithm: generate → parse → execute → answer → score.

One call expands a whole wave of nodes with one batched policy call for the steps, concurrent
sandbox runs, one batched call for the answers of final steps and one batched reward-model call,
so whatever the algorithm, the engines see batches. What differs between the step formats
(prompts, stop strings, parsing, what runs, where the answer is) is asked of the format
(search.formats).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from search.budget import Budget, Tracker
from search.cache import expansion_key, from_record, to_record
from search.config import Components, SearchConfig, SearchProgress
from search.formats import CodeFormat, TextFormat, step_format
from search.judge import Judge
from search.protocols import ExecLimits, Generation, GenerationRequest, ScoreRequest
from search.settle import settled
from search.steps import (
    ANSWER_STOPS,
    ParsedStep,
    clip_output,
    extract_boxed,
    last_line,
    normalize_step,
    render_answer,
    render_output,
    render_prompt,
    syntax_error,
)
from search.text_steps import OUTPUT_FENCE, earlier_answer
from search.tree import Node, Tree, node_dict

log = logging.getLogger(__name__)

_CUT_IN_BLOCK = "malformed: step was cut off inside a code block (no closing fence)"


@dataclass
class _Pending:
    parent: Node
    fields: dict
    final: bool
    code: str = ""  # the program that verifies the step ("" when nothing runs)
    step: ParsedStep | None = None
    raw: str = ""  # the generated text (the text format continues it within a code block)


class Expander:
    """Per-search state (tree, budget tracker, judge) and the one way to grow the tree."""

    def __init__(
        self,
        problem: str,
        components: Components,
        budget: Budget,
        config: SearchConfig,
        gold: str | None = None,
        score: Literal["steps", "terminals"] = "steps",
    ) -> None:
        self.problem = problem
        self.score = score  # "terminals": an algorithm that reads only final scores
        self.c = components
        self.config = config
        self.tree = Tree(problem)
        self.tracker = Tracker(budget)
        self.judge = Judge(components.grader, gold, components.reward_model is not None)
        self.limits = ExecLimits(timeout_s=config.exec_timeout_s)
        self.format: CodeFormat | TextFormat = step_format(config)
        # the prompt before the first step: the code format's is fixed, the text format's is the
        # policy's chat template, asked for on the first expansion
        self._opening: str | None = (
            render_prompt(problem, [], config.prompt_style) if self.format.name == "code" else None
        )
        self._seed = config.seed
        self._seen: dict[int, set[str]] = {}  # per parent: keys of its children, for de-dup
        self._shown: dict[int, tuple] = {}  # per node: what the last progress report said of it

    @property
    def usage(self):
        return self.tracker.usage

    def prompt(self, node: Node, extra: str = "") -> str:
        assert self._opening is not None, "the opening is asked for on the first expansion"
        steps = [n.text for n in self.tree.path(node)]
        if extra:
            steps.append(extra)
        return self.format.prompt(self._opening, steps)

    def report(self) -> None:
        """Tell the progress callback, if any, where the search stands."""
        if self.c.progress is None:
            return
        best, _ = self.judge.choose(self.tree, "best")
        u = self.usage
        self.c.progress(
            SearchProgress(
                rollouts=u.rollouts,
                rollouts_budget=self.tracker.rollout_limit,
                tokens=u.tokens,
                nodes=u.nodes,
                elapsed_s=self.tracker.elapsed(),
                best_answer=best.answer if best else None,
                best_score=self.judge.score(best) if best else None,
                tree_nodes=self._changed_nodes() if self.c.progress_tree else None,
            )
        )

    def settled(self, remaining: int) -> bool:
        """Whether the budget's `stop_when` rule says the vote over the terminals so far is
        decided, with at most `remaining` more terminals to come (search.settle)."""
        b = self.tracker.budget
        if b.stop_when == "budget":
            return False
        votes = [len(c.node_ids) for c in self.judge.clusters]
        return settled(b.stop_when, votes, remaining, b.settle_confidence)

    def _changed_nodes(self) -> list[dict]:
        """The nodes added or changed since the last report, so that a live view of a tree of
        thousands of nodes receives a wave's worth of data, not the whole tree again."""
        out = []
        for n in self.tree:
            kids = len(n.children)
            mark = (n.status, n.visits, n.value_sum, n.prm_score, n.answer, kids, n.exhausted)
            if self._shown.get(n.id) != mark:
                self._shown[n.id] = mark
                out.append(node_dict(n))
        return out

    def _next_seed(self) -> int | None:
        if self._seed is None:
            return None
        self._seed += 1
        return self._seed

    async def expand(
        self,
        items: Sequence[tuple[Node, int]],
        temperature: float | None = None,
        dedup: bool = True,
    ) -> list[Node]:
        """Generate `n` candidate next steps for each (node, n) (distinct nodes); returns the
        new children (invalid ones included, duplicates of siblings dropped), in item order.
        Expansions found in the cache are replayed instead of generated."""
        temp = self.config.temperature if temperature is None else temperature
        keys = []
        if self.c.cache is not None:
            keys = [self._key(node, n, temp, dedup) for node, n in items]
        cached = await self._cache_get(keys) if keys else [None] * len(items)
        fresh = [item for item, hit in zip(items, cached, strict=True) if hit is None]
        new: dict[int, list[Node]] = {}
        if fresh:
            for child in await self._generate(fresh, temp, dedup):
                new.setdefault(child.parent, []).append(child)  # type: ignore[arg-type]
        for (parent, _), records in zip(items, cached, strict=True):
            if records is not None:
                new[parent.id] = self._replay(parent, records)
        children = [c for parent, _ in items for c in new.get(parent.id, [])]

        for parent, _ in items:
            parent.expansions += 1
            if parent.status == "open":
                parent.status = "expanded"
        terminals = [n for n in children if n.status == "terminal"]
        if terminals:
            await self.judge.add_terminals(terminals)
        for parent, _ in items:
            if parent.expansions < self.config.max_expansions:
                continue  # may be sampled again (MCTS's progressive widening)
            if parent.children and all(self.tree.nodes[i].exhausted for i in parent.children):
                self.tree.exhaust(parent, self.config.max_expansions)
        if keys:
            await self._cache_put(
                [
                    (key, [to_record(c) for c in new.get(parent.id, [])])
                    for (parent, _), key, hit in zip(items, keys, cached, strict=True)
                    if hit is None
                ]
            )
        return children

    async def _generate(
        self, items: Sequence[tuple[Node, int]], temp: float, dedup: bool
    ) -> list[Node]:
        """The real expansion: batched generation, sandbox runs, answers, reward scores."""
        cfg = self.config
        if self._opening is None:
            self._opening = await self.format.opening(self.problem, self.c.policy)
        requests = [
            GenerationRequest(
                prompt=self.prompt(node),
                n=n,
                max_tokens=cfg.step_max_tokens,
                temperature=temp,
                top_p=cfg.top_p if temp > 0 else 1.0,
                stop=self.format.stops,
                seed=self._next_seed(),
            )
            for node, n in items
        ]
        outputs = await self.c.policy.generate(requests)
        self.usage.policy_calls += 1
        pending = self._candidates(items, outputs, dedup)
        if isinstance(self.format, TextFormat):
            await self._continue([p for p in pending if p.step and p.step.needs_more], temp)
        self._programs(pending)
        await self._execute([p for p in pending if "error" not in p.fields and p.code])
        finals = [p for p in pending if p.final and "error" not in p.fields]
        if finals and self.format.answer_call:
            await self._answer(finals)
        elif finals:
            self._stated_answers(finals)
        children = [self._attach(p) for p in pending]
        valid = [n for n in children if n.status != "invalid"]
        if self.score == "terminals":
            valid = [n for n in valid if n.status == "terminal"]
        if valid and self.c.reward_model is not None:
            await self._score(valid)
        return children

    def _key(self, node: Node, n: int, temp: float, dedup: bool) -> str:
        return expansion_key(
            self.c.cache_namespace, self.tree, node, n, self.config, temp, dedup, self.score
        )

    async def _cache_get(self, keys: list[str]) -> list[list[dict] | None]:
        assert self.c.cache is not None
        try:
            found = await self.c.cache.get_many(keys)
        except Exception:  # a cache never fails a search
            log.warning("expansion cache lookup failed; computing instead", exc_info=True)
            found = [None] * len(keys)
        self.usage.cache_hits += sum(1 for f in found if f is not None)
        self.usage.cache_misses += sum(1 for f in found if f is None)
        return found

    async def _cache_put(self, entries: list[tuple[str, list[dict]]]) -> None:
        assert self.c.cache is not None
        if not entries:
            return
        try:
            await self.c.cache.put_many(entries)
        except Exception:
            log.warning("expansion cache store failed", exc_info=True)

    def _replay(self, parent: Node, records: list[dict]) -> list[Node]:
        """Attach cached children as if just generated (their tokens were not spent now)."""
        out = []
        for record in records:
            fields = from_record(record)
            status = fields.pop("status")
            if status == "invalid":
                node = self.tree.add(
                    parent, status="invalid", exhausted=True, visits=1, value_sum=-1.0, **fields
                )
            else:
                node = self.tree.add(parent, status=status, **fields)
            self.usage.nodes += 1
            out.append(node)
        return out

    def _candidates(
        self, items: Sequence[tuple[Node, int]], outputs: list[list[Generation]], dedup: bool
    ) -> list[_Pending]:
        """Parse each generation into a would-be child; mark what fails before execution."""
        pending: list[_Pending] = []
        for (parent, _), gens in zip(items, outputs, strict=True):
            seen = self._seen.setdefault(parent.id, set())
            self.usage.prompt_tokens += gens[0].prompt_tokens if gens else 0
            for g in gens:
                self.usage.tokens += g.tokens
                step = self.format.parse(g)
                if dedup:
                    key = f"{g.stop}|{normalize_step(step.body or g.text)}"
                    if key in seen:
                        self.usage.duplicates += 1
                        continue
                    seen.add(key)
                p = _Pending(parent, {"tokens": g.tokens}, step.final, raw=g.text)
                pending.append(p)
                self._take(p, step)
        return pending

    def _take(self, p: _Pending, step: ParsedStep) -> None:
        """Fill a would-be child from its parsed step (a step still to be continued waits)."""
        p.step, p.final = step, step.final
        if step.needs_more:
            return
        if not step.ok:
            p.fields.update(text=p.raw, error=step.error)
            return
        p.fields.update(
            text=self.format.render(step),
            reasoning=step.reasoning,
            code=step.code,
            final=step.final,
        )
        max_depth = self.config.max_depth
        if not step.final and p.parent.depth + 1 >= max_depth:
            p.fields["error"] = f"too deep: no final step within max_depth={max_depth}"

    async def _continue(self, cut: list[_Pending], temp: float) -> None:
        """Text steps whose code block a blank line cut: one batched call takes each on to its
        closing fence, within what is left of the step's token limit."""
        assert isinstance(self.format, TextFormat)
        cfg, delimiter = self.config, self.format.delimiter
        asks, going = [], []
        for p in cut:
            left = cfg.step_max_tokens - p.fields["tokens"]
            if left < 1:
                self._take(p, ParsedStep(ok=False, body=p.raw.strip(), error=_CUT_IN_BLOCK))
                continue
            p.raw += delimiter
            going.append(p)
            asks.append(
                GenerationRequest(
                    prompt=self.prompt(p.parent, p.raw),
                    n=1,
                    max_tokens=left,
                    temperature=temp,
                    top_p=cfg.top_p if temp > 0 else 1.0,
                    stop=self.format.continuation_stop(),
                    seed=self._next_seed(),
                )
            )
        if not asks:
            return
        for p, g in zip(going, await self._one_each(going, asks), strict=True):
            if g.stop is None:  # no closing fence within the step's tokens
                p.raw += g.text
                self._take(p, ParsedStep(ok=False, body=p.raw.strip(), error=_CUT_IN_BLOCK))
                continue
            p.raw += g.text + g.stop
            whole = Generation(p.raw, OUTPUT_FENCE, p.fields["tokens"])  # as if it stopped there
            self._take(p, self.format.parse(whole))

    async def _one_each(
        self, pending: list[_Pending], requests: list[GenerationRequest]
    ) -> list[Generation]:
        """One generation for each pending step (one batched call), counted against the
        budget and the step."""
        outputs = await self.c.policy.generate(requests)
        self.usage.policy_calls += 1
        for p, gens in zip(pending, outputs, strict=True):
            self.usage.tokens += gens[0].tokens
            self.usage.prompt_tokens += gens[0].prompt_tokens
            p.fields["tokens"] += gens[0].tokens
        return [gens[0] for gens in outputs]

    def _programs(self, pending: list[_Pending]) -> None:
        """The program that verifies each valid step (the code format: its path's; the text
        format: its code block, if any), checked for syntax before it costs a sandbox run."""
        for p in pending:
            if "error" in p.fields or p.step is None:
                continue
            p.code = self.format.program([n.code for n in self.tree.path(p.parent)], p.step)
            err = syntax_error(p.code) if p.code else None
            if err:
                p.fields["error"] = f"syntax: {err}"

    async def _execute(self, runnable: list[_Pending]) -> None:
        """Run each candidate's path code concurrently; a failing run invalidates the step."""
        clip = self.config.output_clip_chars
        results = await asyncio.gather(*(self.c.sandbox.run(p.code, self.limits) for p in runnable))
        self.usage.sandbox_runs += len(runnable)
        for p, res in zip(runnable, results, strict=True):
            p.fields["output"] = clip_output(res.stdout, clip)
            if not res.ok:
                kind = "timeout" if res.timed_out else (res.killed or "runtime")
                p.fields["error"] = f"{kind}: {(res.error or '').strip()[-clip:]}"
            elif not self.format.answer_call and p.step is not None:  # the output joins the text
                p.fields["text"] = self.format.render(p.step, p.fields["output"])

    async def _score(self, nodes: list[Node]) -> None:
        assert self.c.reward_model is not None
        name = self.format.name
        scores = await self.c.reward_model.score(
            [
                ScoreRequest(self.problem, tuple(n.text for n in self.tree.path(node)), name)
                for node in nodes
            ]
        )
        self.usage.reward_calls += 1
        for node, s in zip(nodes, scores, strict=True):
            node.prm_score = float(s)

    async def _answer(self, finals: list[_Pending]) -> None:
        """Show each final step its output and let the policy write the boxed answer."""
        cfg = self.config
        requests = []
        for p in finals:
            p.fields["text"] += render_output(p.fields["output"])
            requests.append(
                GenerationRequest(
                    prompt=self.prompt(p.parent, p.fields["text"]),
                    n=1,
                    max_tokens=cfg.answer_max_tokens,
                    temperature=0.0,
                    stop=ANSWER_STOPS,
                    seed=self._next_seed(),
                )
            )
        for p, g in zip(finals, await self._one_each(finals, requests), strict=True):
            p.fields["answer_text"] = g.text.strip()
            p.fields["text"] += render_answer(g.text)
            # The boxed answer, else what the final code printed (the format's last step prints
            # the answer; models not trained on it often restate it unboxed).
            answer = extract_boxed(g.text) or last_line(p.fields["output"])
            if answer is None:
                p.fields["error"] = "no answer: no \\boxed{...} and the code printed nothing"
            else:
                p.fields["answer"] = answer

    def _stated_answers(self, finals: list[_Pending]) -> None:
        """The text format: a final step's answer is the one it states, else the one an earlier
        step of its path stated (a solution whose last step only ends it)."""
        for p in finals:
            assert p.step is not None
            answer = p.step.answer
            if answer is None:
                answer = earlier_answer([n.text for n in self.tree.path(p.parent)])
            if answer is None:
                p.fields["error"] = "no answer: no \\boxed{...} and no 'the answer is'"
                continue
            p.fields["answer"] = answer
            p.fields["answer_text"] = p.step.reasoning or p.step.body or None

    def _attach(self, p: _Pending) -> Node:
        if "error" in p.fields:
            node = self.tree.add(
                p.parent, status="invalid", exhausted=True, visits=1, value_sum=-1.0, **p.fields
            )
        else:
            node = self.tree.add(p.parent, status="terminal" if p.final else "open", **p.fields)
        self.usage.nodes += 1
        return node
