"""The text step format: parsing and rendering plain steps, the chat template's opening, code
blocks run in the real sandbox, and every algorithm on plain steps with the scripted policy."""

import pytest

from search import ALGORITHMS, Budget, Components, SearchConfig, SearchSettings, run_search
from search.cache import expansion_key
from search.expand import Expander
from search.formats import CodeFormat, TextFormat, format_prompt_style, step_format
from search.protocols import Generation
from search.steps import chatml_prompt
from search.text_steps import (
    SYSTEM_PROMPT,
    answer_is,
    parse_text_step,
    render_text_step,
    text_answer,
    text_stops,
)
from search.tree import Tree
from server.cache import MemoryCache
from tests.support.scripted import (
    EOS,
    LENGTH,
    ScriptedPolicy,
    ScriptedReward,
    TextScriptedPolicy,
    chat_template,
    text_five,
    thirty,
)

TEXT = SearchConfig(step_format="text", prompt_style="system", candidates=2, max_depth=6)
OUT = "```output"


# --- parsing and rendering -------------------------------------------------------------------


def test_a_step_is_the_text_up_to_the_delimiter():
    s = parse_text_step("  First, 2 + 3 = 5.\n", "\n\n")
    assert s.ok and not s.final and not s.needs_more
    assert s.body == s.reasoning == "First, 2 + 3 = 5." and s.code == "" and s.answer is None
    assert render_text_step(s.body) == "First, 2 + 3 = 5.\n\n"


@pytest.mark.parametrize("stop", ["\n\n", None])
def test_a_boxed_answer_ends_the_solution_whatever_ended_the_step(stop):
    s = parse_text_step(r"So the total is $\boxed{\frac{1}{2}}$.", stop)
    assert s.ok and s.final and s.answer == r"\frac{1}{2}"


def test_the_end_of_sequence_ends_the_solution_with_the_answer_is():
    s = parse_text_step("Therefore, the final answer is: $42$.", None)
    assert s.ok and s.final and s.answer == "42"
    # at the delimiter the model may still box it: not final
    s = parse_text_step("So the answer is 42.", "\n\n")
    assert s.ok and not s.final and s.answer is None
    # ended with no answer at all: final, the answer left to the steps before it
    s = parse_text_step("That is all.", None)
    assert s.ok and s.final and s.answer is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 7", "7"),
        ("so the answer is **$x^2$**.", "x^2"),
        ("The answer is 3.\nThen the answer is 4.", "4"),
        ("no phrase here", None),
        ("the answer is", None),
    ],
)
def test_answer_is_takes_the_last_phrase(text, expected):
    assert answer_is(text) == expected


def test_text_answer_prefers_the_box():
    assert text_answer(r"the answer is 3, i.e. \boxed{3.0}") == "3.0"


def test_a_step_cut_at_the_token_limit_is_dropped_unless_it_boxed_its_answer():
    s = parse_text_step("A long thought that never ends", None, truncated=True)
    assert not s.ok and "cut off" in (s.error or "")
    s = parse_text_step(r"The answer is \boxed{9}. Let me check it again by", None, truncated=True)
    assert s.ok and s.final and s.answer == "9"


def test_a_python_block_is_the_steps_code_and_the_step_ends_at_its_fence():
    text = "Let me compute it.\n```python\nx = 2 + 3\nprint(x)\n```\n"
    s = parse_text_step(text, OUT)
    assert s.ok and not s.final
    assert s.reasoning == "Let me compute it." and s.code == "x = 2 + 3\nprint(x)"
    assert s.body.endswith("print(x)\n```")
    shown = render_text_step(s.body, "5")
    assert shown == (
        "Let me compute it.\n```python\nx = 2 + 3\nprint(x)\n```\n```output\n5\n```\n\n"
    )
    # "```output" straight after the code closes the block too
    s = parse_text_step("```python\nprint(5)\n", OUT)
    assert s.ok and s.code == "print(5)" and s.body == "```python\nprint(5)\n```"


def test_what_follows_a_block_before_its_output_is_dropped_unless_it_boxes_the_answer():
    # written without the output: dropped, whatever ended the generation; the model goes on
    for stop, truncated in (("\n\n", False), (None, False), (None, True)):
        s = parse_text_step("Compute:\n```python\nprint(5)\n```\nIt prints 5, so", stop, truncated)
        assert s.ok and not s.final and s.body == "Compute:\n```python\nprint(5)\n```"
        assert s.reasoning == "Compute:" and s.code == "print(5)"
    s = parse_text_step("```python\nprint(5)\n```", None)
    assert s.ok and not s.final  # a block then the end: the model reads the output first
    # a boxed answer after the block ends the solution there; the block still runs
    s = parse_text_step("```python\nprint(5)\n```\nSo it is $\\boxed{5}$.", None)
    assert s.ok and s.final and s.answer == "5" and s.code == "print(5)"
    assert s.reasoning == "So it is $\\boxed{5}$." and s.body.endswith("$\\boxed{5}$.")


def test_a_blank_line_inside_a_block_asks_for_more():
    s = parse_text_step("```python\ndef f():\n    return 5", "\n\n")
    assert s.ok and s.needs_more and not s.final


@pytest.mark.parametrize(
    ("text", "stop", "truncated", "why"),
    [
        ("   \n", "\n\n", False, "empty step"),
        ("```python\nx = 1", None, True, "inside a code block"),
        ("```python\nx = 1", None, False, "inside a code block"),
        ("```python\n\n```", OUT, False, "empty code block"),
        ("Now the output:\n", OUT, False, "no code before it"),
        ("x", "<|user|>", False, "ended with"),
    ],
)
def test_malformed_text_steps_fail_without_raising(text, stop, truncated, why):
    s = parse_text_step(text, stop, truncated)
    assert not s.ok and why in (s.error or "")


def test_a_custom_delimiter_splits_steps():
    fmt = TextFormat("\n")
    assert fmt.stops == text_stops("\n") == ("\n", OUT)
    s = fmt.parse(Generation("One line.", "\n", 3))
    assert s.ok and fmt.render(s) == "One line.\n"
    # the blank-line delimiter is then only text
    assert not fmt.parse(Generation("One line.", "\n\n", 3)).ok


# --- prompts ---------------------------------------------------------------------------------


async def test_the_opening_is_the_models_chat_template_with_the_system_prompt():
    policy = TextScriptedPolicy()
    opening = await TextFormat().opening("  What is 2+3? ", policy)
    system = {"role": "system", "content": SYSTEM_PROMPT}
    assert policy.chats == [[system, {"role": "user", "content": "What is 2+3?"}]]
    assert opening == chat_template(policy.chats[0])
    # bare: no system prompt (as DeepSeek-R1's distillations are asked)
    bare = await TextFormat(prompt_style="bare").opening("What is 2+3?", policy)
    assert bare == chat_template([{"role": "user", "content": "What is 2+3?"}])


async def test_a_policy_without_a_chat_template_gets_chatml():
    opening = await TextFormat().opening("What is 2+3?", TextScriptedPolicy(chat=False))
    assert opening == chatml_prompt(
        [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "What is 2+3?"}]
    )
    assert opening.endswith("<|im_start|>assistant\n")


def test_the_text_format_reads_only_system_or_bare():
    assert [format_prompt_style("text", s) for s in ("few_shot", "chat", "system", "bare")] == [
        "system",
        "system",
        "system",
        "bare",
    ]
    assert format_prompt_style("code", "few_shot") == "few_shot"
    config = SearchSettings().config("few_shot", step_format="text", step_delimiter="\n")
    got = (config.step_format, config.step_delimiter, config.prompt_style)
    assert got == ("text", "\n", "system")
    assert isinstance(step_format(config), TextFormat)
    assert isinstance(step_format(SearchSettings().config("few_shot")), CodeFormat)


async def test_every_prompt_extends_its_parents(sandbox):
    policy = TextScriptedPolicy(default=text_five)
    r = await run_search("greedy", "What is 2+3?", Components(policy, sandbox), config=TEXT)
    first, second = (call[0].prompt for call in policy.calls)
    assert first == chat_template(policy.chats[0])
    assert second == first + "We add 2 and 3: 2 + 3 = 5.\n\n"
    assert all(req.stop == ("\n\n", OUT) for call in policy.calls for req in call)
    assert r.answer == "5"


# --- code blocks in the sandbox --------------------------------------------------------------


def block_script(code: str, blank_line: bool = False) -> dict[tuple[str, ...], list[str]]:
    """Step 1 computes in a block (cut by a blank line if `blank_line`); step 2 boxes what the
    block printed, read from the output block in its prompt."""
    first = "Compute it.\n```python\n" + code + "\n```\n" + OUT
    script = {(): [first]}
    if blank_line:
        head, tail = code.split("\n\n", 1)
        script = {
            (): ["Compute it.\n```python\n" + head + "\n\n"],
            ("Compute it.\n```python\n" + head,): [tail + "\n```\nmore"],
        }
    return script


def box_the_output(policy: TextScriptedPolicy):
    """After the first step, box the last line of the output block shown in the prompt."""

    def default(path):
        shown = "\n\n".join(path).split("```output\n", 1)[-1].split("\n```", 1)[0].strip()
        return [f"The result is $\\boxed{{{shown}}}$." + EOS]

    policy.default = default
    return policy


async def test_a_python_block_runs_and_its_output_follows_it(sandbox):
    policy = box_the_output(TextScriptedPolicy(block_script("x = 6 * 7\nprint(x)")))
    r = await run_search("greedy", "6*7?", Components(policy, sandbox), config=TEXT)
    assert r.answer == "42" and r.usage.sandbox_runs == 1
    step = r.steps[0]
    assert step.code == "x = 6 * 7\nprint(x)" and step.output == "42"
    assert step.reasoning == "Compute it."
    node = r.tree.nodes[step.node_id]
    assert node.text.endswith("print(x)\n```\n```output\n42\n```\n\n")
    assert policy.calls[1][0].prompt.endswith(node.text)  # the next step sees the output
    assert r.tree.nodes[r.steps[-1].node_id].output is None  # no code, nothing ran


async def test_a_failing_block_drops_the_step(sandbox):
    policy = box_the_output(TextScriptedPolicy(block_script("print(1 / 0)")))
    r = await run_search("greedy", "1/0?", Components(policy, sandbox), config=TEXT)
    assert r.answer is None and r.usage.sandbox_runs == 1
    (dropped,) = (n for n in r.tree if n.status == "invalid")
    assert dropped.error.startswith("runtime") and "ZeroDivisionError" in dropped.error
    # a block that does not compile never reaches the sandbox
    policy = box_the_output(TextScriptedPolicy(block_script("print(1 +")))
    r = await run_search("greedy", "?", Components(policy, sandbox), config=TEXT)
    (dropped,) = (n for n in r.tree if n.status == "invalid")
    assert dropped.error.startswith("syntax") and r.usage.sandbox_runs == 0


async def test_a_block_cut_by_a_blank_line_is_continued_to_its_fence(sandbox):
    code = "def f():\n    return 5\n\nprint(f())"
    policy = box_the_output(TextScriptedPolicy(block_script(code, blank_line=True)))
    r = await run_search("greedy", "f()?", Components(policy, sandbox), config=TEXT)
    assert r.answer == "5"
    step = r.steps[0]
    assert step.code == code and step.output == "5"
    # one call for the step, one to go on to the fence, one for the next step
    assert r.usage.policy_calls == 3
    go_on = policy.calls[1][0]
    assert go_on.stop == ("```",) and go_on.prompt.endswith("    return 5\n\n")
    first, rest = "Compute it.\n```python\ndef f():\n    return 5", "print(f())\n"
    assert r.tree.nodes[step.node_id].tokens == len(first) // 4 + len(rest) // 4


async def test_a_block_never_closed_is_dropped(sandbox):
    script = {
        (): ["```python\nx = 1\n\n"],
        ("```python\nx = 1",): ["print(x)" + LENGTH],
    }
    r = await greedy(TextScriptedPolicy(script), sandbox)
    (dropped,) = (n for n in r.tree if n.status == "invalid")
    assert "inside a code block" in dropped.error and r.usage.sandbox_runs == 0


async def greedy(policy, sandbox, problem: str = "?"):
    return await run_search("greedy", problem, Components(policy, sandbox), config=TEXT)


# --- answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("last", ["", "That is all."])
async def test_a_last_step_without_an_answer_takes_the_one_stated_before_it(last, sandbox):
    script = {(): ["So the answer is 12.\n\n"], ("So the answer is 12.",): [last + EOS]}
    r = await greedy(TextScriptedPolicy(script), sandbox)
    assert r.answer == "12" and r.steps[-1].reasoning == last
    assert r.answer_text == (last or None)


async def test_a_final_step_with_no_answer_anywhere_is_dropped(sandbox):
    script = {(): ["I give up." + EOS]}
    r = await greedy(TextScriptedPolicy(script), sandbox)
    (dropped,) = (n for n in r.tree if n.status == "invalid")
    assert dropped.error.startswith("no answer") and r.answer is None


# --- every algorithm -------------------------------------------------------------------------


def two_answers(path: tuple[str, ...]) -> list[str]:
    """Two first steps; the one about apples leads to 5, the one about pears to 6."""
    if not path:
        return ["Count the apples: 2 + 3.\n\n", "Count the pears: 2 + 4.\n\n"]
    if "apples" in path[0]:
        return ["So there are $\\boxed{5}$ apples." + EOS]
    return ["So there are $\\boxed{6}$ pears." + EOS]


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
async def test_every_algorithm_answers_on_plain_steps(algorithm, sandbox):
    policy = TextScriptedPolicy(default=text_five)
    r = await run_search(
        algorithm, "What is 2+3?", Components(policy, sandbox), Budget(rollouts=4), TEXT
    )
    assert r.answer == "5", r.tree.to_json()
    assert [s.reasoning for s in r.steps] == [
        "We add 2 and 3: 2 + 3 = 5.",
        "So the answer is $\\boxed{5}$.",
    ]
    assert r.usage.tokens > 0 and r.usage.sandbox_runs == 0  # no code: nothing ran
    assert r.answer_text == "So the answer is $\\boxed{5}$."


@pytest.mark.parametrize("algorithm", ["best_of_n", "beam_search", "particle_filtering", "mcts"])
async def test_every_algorithm_that_reads_scores_follows_the_reward_model(algorithm, sandbox):
    """The reward model prefers the pears, whose answer 6 is then chosen; it is asked about
    text steps, and says so."""
    reward = ScriptedReward({"pears": 0.9, "apples": -0.9})
    comps = Components(TextScriptedPolicy(default=two_answers), sandbox, reward)
    config = TEXT.model_copy(update={"candidates": 2, "final_choice": "best", "seed": 0})
    r = await run_search(algorithm, "?", comps, Budget(rollouts=4), config)
    assert r.answer == "6" and r.reward_source == "reward_model"
    assert reward.requests and {q.step_format for q in reward.requests} == {"text"}


# --- the cache -------------------------------------------------------------------------------


def test_the_cache_key_differs_by_format_and_delimiter():
    tree = Tree("p")
    code = SearchConfig()
    text = code.model_copy(update={"step_format": "text"})
    line = text.model_copy(update={"step_delimiter": "\n"})
    keys = {expansion_key("ns", tree, tree.root, 4, c, 0.7, True) for c in (code, text, line)}
    assert len(keys) == 3


async def test_a_text_expansion_is_never_served_to_a_code_search(sandbox):
    cache = MemoryCache(100, 60, 1 << 20)
    policy = TextScriptedPolicy(default=text_five)
    comps = Components(policy, sandbox, cache=cache, cache_namespace="ns")
    await run_search("greedy", "What is 2+3?", comps, config=TEXT)
    hit = await run_search("greedy", "What is 2+3?", comps, config=TEXT)
    assert hit.usage.cache_hits == 2 and hit.answer == "5"
    code = Components(ScriptedPolicy(default=thirty), sandbox, cache=cache, cache_namespace="ns")
    r = await run_search("greedy", "What is 2+3?", code, config=SearchConfig(max_depth=4))
    assert r.usage.cache_hits == 0 and r.answer == "30"


def test_the_expander_asks_the_format():
    ex = Expander("p", Components(TextScriptedPolicy(), None), Budget(), TEXT)  # type: ignore[arg-type]
    assert isinstance(ex.format, TextFormat) and ex._opening is None
