"""Reward models on either step format, without a model: a step-tag PRM's aggregation of known
per-step scores, what the PRM and our PPM read of text steps, the remote backends against a
stand-in vLLM server (httpx's mock transport), and the chat template a policy frames text steps
with."""

import json
import math

import httpx
import pytest

from models.chat_template import chat_prompt
from models.ppm import ppm_text
from models.remote import RemotePolicy, RemoteReward
from models.settings import ModelSettings
from models.step_tag_prm import aggregate, last_step_score, prm_messages, prm_steps
from search.protocols import GenerationRequest, ScoreRequest

ROWS = [[0.1, 0.9], [0.4, 0.6], [0.2, 0.8]]  # [P(bad), P(good)] at each step's tag
TEXT_REQ = ScoreRequest(
    "What is 6*7?",
    (
        "Multiply.\n\n",
        "```python\nprint(6 * 7)\n```\n```output\n42\n```\n\n",
        "So it is $\\boxed{42}$.\n\n",
    ),
    "text",
)


@pytest.mark.parametrize(
    ("how", "expected"),
    [("last", 2 * 0.8 - 1), ("min", 2 * 0.6 - 1), ("prod", 2 * (0.9 * 0.6 * 0.8) - 1)],
)
def test_aggregation_of_known_step_scores(how, expected):
    assert aggregate(ROWS, how) == pytest.approx(expected)


def test_aggregation_edges():
    assert last_step_score(ROWS) == aggregate(ROWS, "last")
    assert aggregate([[0.0, 1.0]], "prod") == 1.0 and aggregate([[1.0, 0.0]], "min") == -1.0
    with pytest.raises(ValueError, match="no step scores"):
        aggregate([], "min")
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(ROWS, "mean")  # type: ignore[arg-type]


def test_the_prm_reads_text_steps_as_written_and_code_steps_without_tags():
    assert prm_steps(TEXT_REQ) == [
        "Multiply.",
        "```python\nprint(6 * 7)\n```\n```output\n42\n```",
        "So it is $\\boxed{42}$.",
    ]
    chat = prm_messages(TEXT_REQ, "<extra_0>")
    assert [m["role"] for m in chat] == ["system", "user", "assistant"]
    assert chat[2]["content"].count("<extra_0>") == 3 and chat[2]["content"].endswith("<extra_0>")
    code = ScoreRequest("p", ("# Step 1: x\nx = 1\n<end_of_step>\n",))
    assert prm_steps(code) == ["# Step 1: x x = 1"]


def test_our_ppm_reads_text_steps_after_the_problem():
    assert ppm_text(TEXT_REQ) == "<|user|>:\nWhat is 6*7?\n<|assistant|>: " + "".join(
        TEXT_REQ.steps
    )
    code = ScoreRequest("p", ("# Step 1\nx = 1\n<end_of_step>\n",))
    assert ppm_text(code).endswith("<code>\n# Step 1\nx = 1\n<end_of_step>\n")


def test_settings_name_the_format_delimiter_and_aggregation(monkeypatch):
    monkeypatch.setenv("RSTAR_STEP_FORMAT", "text")
    monkeypatch.setenv("RSTAR_STEP_DELIMITER", r"\n")
    monkeypatch.setenv("RSTAR_PRM_AGGREGATION", "min")
    s = ModelSettings()
    assert (s.step_format, s.step_delimiter, s.prm_aggregation) == ("text", "\n", "min")
    monkeypatch.setenv("RSTAR_PRM_AGGREGATION", "mean")
    with pytest.raises(ValueError, match="prm_aggregation"):
        ModelSettings()


# --- a stand-in vLLM server ------------------------------------------------------------------


class FakeVLLM:
    """Answers /v1/models, /pooling (every token's scores, the tags' at the tag positions),
    /tokenize and /detokenize (one token per character, a BOS of id 0 before prompts) and
    /v1/completions; records the bodies it got."""

    TAG = "<extra_0>"

    def __init__(self, good: list[float]) -> None:
        self.good = good
        self.bodies: list[tuple[str, dict]] = []

    def tokens(self, text: str) -> list[int]:
        ids, i = [], 0
        while i < len(text):
            if text.startswith(self.TAG, i):
                ids.append(1)
                i += len(self.TAG)
            else:
                ids.append(ord(text[i]) + 10)
                i += 1
        return ids

    def chat_text(self, messages: list[dict]) -> str:
        return "".join(f"[{m['role']}]{m['content']}" for m in messages)

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else {}
        self.bodies.append((path, body))
        if path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "served"}]})
        if path == "/tokenize":
            if "messages" in body:
                text = self.chat_text(body["messages"])
                text += "[assistant]" if body.get("add_generation_prompt") else ""
                return httpx.Response(200, json={"tokens": [0, *self.tokens(text)]})
            ids = self.tokens(body["prompt"])
            return httpx.Response(
                200, json={"tokens": [0, *ids] if body["add_special_tokens"] else ids}
            )
        if path == "/detokenize":
            chars = [
                "<s>" if t == 0 else self.TAG if t == 1 else chr(t - 10) for t in body["tokens"]
            ]
            return httpx.Response(200, json={"prompt": "".join(chars)})
        if path == "/pooling":
            ids = [0, *self.tokens(self.chat_text(body["messages"]))]
            it = iter(self.good)
            rows = [[1 - (g := next(it)), g] if t == 1 else [0.5, 0.5] for t in ids]
            return httpx.Response(200, json={"data": [{"index": 0, "data": rows}]})
        if path == "/v1/completions":
            choices = [
                {"index": 0, "text": "cut", "finish_reason": "length", "stop_reason": None},
                {"index": 1, "text": "done", "finish_reason": "stop", "stop_reason": "\n\n"},
                {"index": 2, "text": "end", "finish_reason": "stop", "stop_reason": None},
            ]
            return httpx.Response(200, json={"choices": choices, "usage": {"completion_tokens": 6}})
        return httpx.Response(404, text=path)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url="http://vllm", transport=httpx.MockTransport(self.handler)
        )


@pytest.mark.parametrize("how", ["last", "min", "prod"])
async def test_a_remote_step_tag_prm_aggregates_text_steps(how):
    server = FakeVLLM([0.9, 0.6, 0.8])
    prm = RemoteReward("http://vllm", kind="step_tag_prm", aggregation=how)
    prm._client = server.client()
    (score,) = await prm.score([TEXT_REQ])
    await prm.aclose()
    assert score == pytest.approx(aggregate(ROWS, how))
    sent = next(b for p, b in server.bodies if p == "/pooling")
    assert sent["messages"][2]["content"] == "<extra_0>".join(prm_steps(TEXT_REQ)) + "<extra_0>"


async def test_a_remote_policy_frames_the_chat_with_the_servers_template_once_without_bos():
    server = FakeVLLM([])
    policy = RemotePolicy("http://vllm/v1")
    policy._client = server.client()
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    assert await policy.chat_prompt(messages) == "[system]S[user]Q[assistant]"
    assert await policy.chat_prompt(messages) == "[system]S[user]Q[assistant]"
    bos_checks = [b for p, b in server.bodies if p == "/tokenize" and "prompt" in b]
    assert len(bos_checks) == 2  # asked once: with and without special tokens
    gens = (await policy.generate([GenerationRequest("p", n=3, stop=("\n\n",))]))[0]
    await policy.aclose()
    assert [(g.stop, g.truncated) for g in gens] == [(None, True), ("\n\n", False), (None, False)]


class FakeTokenizer:
    """A tokenizer with a chat template that writes a BOS, and that may add one itself."""

    chat_template = "{{ messages }}"
    bos_token, bos_token_id = "<s>", 0

    def __init__(self, adds_bos: bool) -> None:
        self.adds_bos = adds_bos

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert not tokenize and add_generation_prompt
        return "<s>" + "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def __call__(self, text):
        class Encoded:
            input_ids = [0, 5] if self.adds_bos else [5]

        return Encoded()


@pytest.mark.parametrize("adds_bos", [True, False])
def test_the_chat_template_leaves_out_a_bos_the_tokenizer_adds(adds_bos):
    text = chat_prompt(FakeTokenizer(adds_bos), [{"role": "user", "content": "Q"}])
    assert text == ("" if adds_bos else "<s>") + "<user>Q<assistant>"


def test_a_tokenizer_without_a_template_has_no_chat_prompt():
    tok = FakeTokenizer(False)
    tok.chat_template = None
    assert chat_prompt(tok, [{"role": "user", "content": "Q"}]) is None


def test_prod_is_the_product():
    assert aggregate([[0, 0.5]] * 3, "prod") == pytest.approx(2 * math.pow(0.5, 3) - 1)
