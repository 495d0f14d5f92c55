"""The step format: prompts, parsing, path code, output clipping, boxed answers."""

import re

import pytest

from search import steps
from search.steps import (
    CODE_END,
    STEP_END,
    STEP_STOPS,
    clip_output,
    extract_boxed,
    parse_step,
    path_code,
    render_prompt,
    render_step,
    syntax_error,
)


def test_bare_prompt_is_the_trained_format():
    p = render_prompt("What is 2+2?", [], style="bare")
    assert p == (
        "<|user|>:\nWhat is 2+2?\n<|assistant|>: Let's think step by step and solve the problem "
        "with code.\n<code>\n"
    )


def test_few_shot_prompt_ends_with_the_problem_and_prior_steps():
    step = render_step("# Step 1: x\nx = 2 + 2", final=False)
    p = render_prompt("What is 2+2?", [step], style="few_shot")
    assert p.count("<|user|>") == 3  # two worked examples, then the problem
    assert p.endswith(
        "What is 2+2?\n<|assistant|>: Let's think step by step and solve the "
        "problem with code.\n<code>\n# Step 1: x\nx = 2 + 2\n<end_of_step>\n"
    )


@pytest.mark.parametrize(("style", "examples"), [("chat", 4), ("system", 0)])
def test_chat_prompts_state_the_format_and_leave_the_assistant_turn_open(style, examples):
    step = render_step("# Step 1: x\nx = 2 + 2", final=False)
    p = render_prompt("What is 2+2?", [step], style=style)
    assert p.startswith(f"<|im_start|>system\n{steps.SYSTEM_PROMPT}<|im_end|>\n")
    assert p.count("<|im_start|>user\n") == examples + 1
    assert p.count("<|im_start|>assistant\n") == examples + 1
    assert p.endswith(
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\nLet's think step by "
        "step and solve the problem with code.\n<code>\n# Step 1: x\nx = 2 + 2\n<end_of_step>\n"
    )
    assert "<|user|>" not in p


@pytest.mark.parametrize("style", steps.PROMPT_STYLES)
def test_child_prompt_extends_parent_prompt(style):
    """Prefix caching relies on every child's prompt starting with its parent's."""
    s1 = render_step("# Step 1\na = 1", False)
    s2 = render_step("# Step 2\nprint(a)", True)
    assert render_prompt("P", [s1, s2], style).startswith(render_prompt("P", [s1], style))


async def test_few_shot_examples_are_valid_and_their_code_prints_their_output(sandbox):
    """The examples teach the format, so they must obey it: every step parses and the code
    of each example prints the output it shows."""
    text = "".join(solution for _, solution in steps._EXAMPLES)
    examples = re.findall(r"<code>\n(.*?)<output>\n(.*?)\n<end_of_output>", text, re.S)
    assert len(examples) == len(steps._EXAMPLES) == 4
    for body, shown in examples:
        parts = re.split(rf"\n({STEP_END}|{CODE_END})\n", body)
        parsed = [parse_step(t, stop) for t, stop in zip(parts[0::2], parts[1::2], strict=False)]
        assert all(p.ok for p in parsed) and parsed[-1].final
        assert not any(p.final for p in parsed[:-1])
        res = await sandbox.run(path_code([p.code for p in parsed]))
        assert res.ok and res.stdout.strip() == shown.strip()


def test_stop_strings_cover_step_code_and_answer_ends():
    assert {STEP_END, CODE_END, "<output>", "<end_of_answer>", "<|user|>"} <= set(STEP_STOPS)


def test_parse_intermediate_step():
    s = parse_step("# Step 1: Count pencils.\n# (twelve a box)\nbought = 3 * 12\n", STEP_END)
    assert s.ok and not s.final
    assert s.reasoning == "Step 1: Count pencils.\n(twelve a box)"
    assert s.code == "bought = 3 * 12"


@pytest.mark.parametrize("stop", ["<output>", "<end_of_output>"])
def test_a_model_that_jumps_to_the_output_has_ended_its_code(stop):
    s = parse_step("# Step 2: print it\nprint(84)\n", stop)
    assert s.ok and s.final and s.code == "print(84)"


def test_parse_final_step_and_leading_code_tag():
    s = parse_step("<code>\n# Step 2: Now print the final answer.\nprint(29)", CODE_END)
    assert s.ok and s.final and s.code == "print(29)"
    assert s.body.startswith("# Step 2")


@pytest.mark.parametrize(
    ("text", "stop", "why"),
    [
        ("x = 1\n", None, "cut off"),
        ("x = 1\n", "<end_of_answer>", "ended with '<end_of_answer>'"),
        ("x = 1\n", "<|user|>", "ended with"),
        ("x = 1\n<output>\n1\n<end_of_output>", STEP_END, "contains '<output>'"),
        ("x = 1\n<end_of_step>\ny = 2", STEP_END, "contains '<end_of_step>'"),
        ("   \n ", STEP_END, "empty step"),
        ("# Step 3: Now print the final answer.", CODE_END, "final step has no code"),
    ],
)
def test_malformed_steps_fail_without_raising(text, stop, why):
    s = parse_step(text, stop)
    assert not s.ok
    assert s.error and s.error.startswith("malformed") and why in s.error


def test_path_code_joins_steps_in_order():
    assert path_code(["a = 1", "", "b = a + 1", "print(b)"]) == "a = 1\nb = a + 1\nprint(b)\n"


def test_syntax_error_is_caught_before_execution():
    assert syntax_error("x = (1 +\n") is not None
    assert "line 2" in syntax_error("x = 1\ny = = 2\n")
    assert syntax_error("x = 1\nprint(x)\n") is None
    assert syntax_error("a = 1\x00") is not None  # a null byte in the source


def test_clip_output_keeps_head_and_tail():
    text = "A" * 600 + "B" * 1000 + "C" * 600
    clipped = clip_output(text, 1024)
    assert clipped.startswith("A" * 512) and clipped.endswith("C" * 512)
    assert "[1176 characters omitted]" in clipped
    assert clip_output("  short \n") == "short"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"The answer is \boxed{29}.", "29"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"first \boxed{1} then \boxed{ \{1, 2\} }", r"\{1, 2\}"),
        (r"\boxed{\text{(C)}}", r"\text{(C)}"),
        (r"\boxed {x^{2}+1}", "x^{2}+1"),
        (r"\fbox{7}", "7"),
        (r"no box here: 29", None),
        (r"\boxed{unbalanced", None),
        (r"\boxed{}", None),
    ],
)
def test_extract_boxed_matches_braces(text, expected):
    assert extract_boxed(text) == expected
