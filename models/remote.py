"""Remote engines over HTTP: any OpenAI-compatible `/v1/completions` server as the policy (a
`vllm serve` pod in production), and vLLM's `/pooling` API as the reward model.

One httpx client per backend, with a timeout, retries on connection errors, and a bearer
token when configured. A server error stops the search with a message naming the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from models.ppm import logit_to_score, ppm_text
from models.settings import RewardKind
from models.step_tag_prm import Aggregation, aggregate, prm_messages
from search.protocols import Generation, GenerationRequest, ScoreRequest
from search.steps import cut_at_stop

MAX_STOPS = 4  # the OpenAI API (and vLLM's server) accept at most four stop strings


class RemoteError(RuntimeError):
    """The remote model server failed or answered something we cannot use."""


def _client(base_url: str, timeout_s: float, api_key: str | None) -> httpx.AsyncClient:
    """A client on the server's root: `http://host:8000` and `http://host:8000/v1` both work
    (vLLM serves the OpenAI routes under /v1 and /pooling, /tokenize at the root)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    root = base_url.rstrip("/").removesuffix("/v1")
    return httpx.AsyncClient(
        base_url=root,
        timeout=httpx.Timeout(timeout_s, connect=10.0),
        transport=httpx.AsyncHTTPTransport(retries=3),  # retries connection errors only
        headers=headers,
    )


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> Any:
    try:
        r = await client.post(path, json=body)
    except httpx.HTTPError as e:
        raise RemoteError(f"{client.base_url.join(path)}: {type(e).__name__}: {e}") from e
    if r.status_code >= 400:
        raise RemoteError(f"{r.request.url}: HTTP {r.status_code}: {r.text[:500]}")
    return r.json()


async def _served_model(client: httpx.AsyncClient) -> str:
    try:
        r = await client.get("/v1/models")
        r.raise_for_status()
        return r.json()["data"][0]["id"]
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as e:
        raise RemoteError(
            f"{client.base_url}/models: cannot tell which model it serves: {e}"
        ) from e


class RemotePolicy:
    engine = "remote"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        timeout_s: float = 300.0,
        api_key: str | None = None,
    ) -> None:
        self.path = base_url
        self._model = model if model not in (None, "", "default") else None
        self._client = _client(base_url, timeout_s, api_key)
        self._bos: int | None = None  # the token the server puts before every prompt itself
        self._bos_known = False

    async def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str | None:
        """The served model's chat template, applied by the server: its `/tokenize` of the chat,
        read back as text with `/detokenize`, less a BOS the server adds to prompts itself.
        None when the server has no template for it."""
        if self._model is None:
            self._model = await _served_model(self._client)
        body = {"model": self._model, "messages": list(messages), "add_generation_prompt": True}
        try:
            tokens = (await _post(self._client, "/tokenize", body)).get("tokens") or []
        except RemoteError as e:
            if "chat template" in str(e).lower():
                return None
            raise
        bos = await self._server_bos()
        if tokens and bos is not None and tokens[0] == bos:
            tokens = tokens[1:]
        data = await _post(self._client, "/detokenize", {"model": self._model, "tokens": tokens})
        return data.get("prompt")

    async def _server_bos(self) -> int | None:
        if not self._bos_known:
            body = {"model": self._model, "prompt": "x", "add_special_tokens": True}
            plain = await _post(self._client, "/tokenize", {**body, "add_special_tokens": False})
            full = await _post(self._client, "/tokenize", body)
            extra = len(full.get("tokens") or []) - len(plain.get("tokens") or [])
            self._bos = full["tokens"][0] if extra > 0 else None
            self._bos_known = True
        return self._bos

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Generation]]:
        if self._model is None:
            self._model = await _served_model(self._client)
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    async def _one(self, r: GenerationRequest) -> list[Generation]:
        body: dict[str, Any] = {
            "model": self._model,
            "prompt": r.prompt,
            "n": r.n,
            "max_tokens": r.max_tokens,
            "temperature": r.temperature,
            "top_p": r.top_p if r.temperature > 0 else 1.0,
            "stop": list(r.stop[:MAX_STOPS]),
        }
        if r.seed is not None:
            body["seed"] = r.seed
        data = await _post(self._client, "/v1/completions", body)
        try:
            choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
            usage = data.get("usage") or {}
            total = int(usage.get("completion_tokens") or 0)
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
        except (KeyError, TypeError, ValueError) as e:
            raise RemoteError(f"unexpected /completions reply: {str(data)[:300]}") from e
        # Token counts come per response; share them out by text length.
        lengths = [len(c.get("text") or "") + 1 for c in choices]
        gens = []
        for c, length in zip(choices, lengths, strict=True):
            # vLLM reports which stop string fired as `stop_reason` (an int is a stop token)
            stop = c.get("stop_reason") if isinstance(c.get("stop_reason"), str) else None
            text = c.get("text") or ""
            if len(r.stop) > MAX_STOPS:  # the stops the server was not given are cut here
                text, late = cut_at_stop(text, r.stop[MAX_STOPS:])
                stop = late or stop
            tokens = round(total * length / sum(lengths)) if total else 0
            truncated = stop is None and c.get("finish_reason") == "length"
            gens.append(Generation(text, stop, tokens, prompt_tokens, truncated))
        return gens

    async def aclose(self) -> None:
        await self._client.aclose()


class RemoteReward:
    """vLLM's `/pooling`: `classify` (raw logit, tanh) for our PPM; `token_classify` on the
    PRM's chat for a step-tag PRM, its steps' P(good) aggregated by `aggregation`."""

    engine = "remote"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        kind: RewardKind = "ppm",
        step_tag: str = "<extra_0>",
        timeout_s: float = 300.0,
        api_key: str | None = None,
        aggregation: Aggregation = "last",
    ) -> None:
        self.path = base_url
        self.kind = kind
        self.step_tag = step_tag
        self.aggregation = aggregation
        self._model = model if model not in (None, "", "default") else None
        self._client = _client(base_url, timeout_s, api_key)

    async def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        if not requests:
            return []
        if self._model is None:
            self._model = await _served_model(self._client)
        if self.kind == "ppm":
            body = {
                "model": self._model,
                "input": [ppm_text(r) for r in requests],
                "task": "classify",
                "use_activation": False,
                "truncation_side": "left",
            }
            data = await _post(self._client, "/pooling", body)
            rows = self._rows(data, len(requests))
            return [logit_to_score(float(_flat(row)[0])) for row in rows]
        replies = await asyncio.gather(*(self._prm_one(r) for r in requests))
        return list(replies)

    async def _prm_one(self, req: ScoreRequest) -> float:
        messages = prm_messages(req, self.step_tag)
        body = {
            "model": self._model,
            "messages": messages,
            "task": "token_classify",
            "add_generation_prompt": False,
        }
        data = await _post(self._client, "/pooling", body)
        (rows,) = self._rows(data, 1)
        if len(rows) != len(req.steps):
            # The server returns every token's scores unless it was started with
            # --pooler-config '{"step_tag_id": ...}': find the tags through its tokenizer.
            rows = await self._rows_at_tags(messages, rows)
        return aggregate(rows, self.aggregation)

    async def _rows_at_tags(self, messages: list[dict[str, str]], rows: list) -> list:
        body = {"model": self._model, "messages": messages, "add_generation_prompt": False}
        tokens = (await _post(self._client, "/tokenize", body)).get("tokens") or []
        tag = await _post(
            self._client,
            "/tokenize",
            {"model": self._model, "prompt": self.step_tag, "add_special_tokens": False},
        )
        tag_ids = tag.get("tokens") or []
        if len(tag_ids) != 1 or len(tokens) != len(rows):
            raise RemoteError(f"cannot locate the step tag {self.step_tag!r} in the PRM's input")
        return [row for tok, row in zip(tokens, rows, strict=True) if tok == tag_ids[0]]

    @staticmethod
    def _rows(data: Any, n: int) -> list[Any]:
        try:
            rows = [d["data"] for d in sorted(data["data"], key=lambda d: d["index"])]
        except (KeyError, TypeError) as e:
            raise RemoteError(f"unexpected /pooling reply: {str(data)[:300]}") from e
        if len(rows) != n:
            raise RemoteError(f"/pooling returned {len(rows)} results for {n} inputs")
        return rows

    async def aclose(self) -> None:
        await self._client.aclose()


def _flat(row: Any) -> list[float]:
    while isinstance(row, list) and row and isinstance(row[0], list):
        row = row[0]
    return row
