"""Reward models on vLLM's pooling runner, in-process: our PPM (classify, one label) and
step-tag PRMs (token_classify at the tag positions, the steps' P(good) aggregated)."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Sequence

from models.ppm import logit_to_score, ppm_text
from models.settings import ModelSettings, RewardKind
from models.step_tag_prm import aggregate, prm_messages
from models.vllm_engine import make_engine
from search.protocols import ScoreRequest


class VLLMReward:
    engine = "vllm"

    def __init__(self, model: str, settings: ModelSettings, kind: RewardKind = "ppm") -> None:
        self.path = model
        self.kind = kind
        self.step_tag = settings.prm_step_tag
        self.aggregation = settings.prm_aggregation
        self.llm = make_engine(model, settings, "pooling")

    async def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    async def _one(self, req: ScoreRequest) -> float:
        from vllm import PoolingParams

        if self.kind != "ppm":
            return aggregate(await self.step_probabilities(req), self.aggregation)
        params = PoolingParams(task="classify", use_activation=False)
        data = await self._encode(ppm_text(req), params)
        return logit_to_score(float(data.reshape(-1)[0]))

    async def step_probabilities(self, req: ScoreRequest) -> list[list[float]]:
        """A step-tag PRM's [P(bad), P(good)] at each step's tag, first step first."""
        from vllm import PoolingParams

        tok = self.llm.get_tokenizer()
        if inspect.isawaitable(tok):  # async in some vLLM versions
            tok = await tok
        text = tok.apply_chat_template(prm_messages(req, self.step_tag), tokenize=False)
        tag_id = tok.convert_tokens_to_ids(self.step_tag)
        params = PoolingParams(task="token_classify", step_tag_id=tag_id)
        return (await self._encode(text, params)).float().tolist()

    async def _encode(self, text: str, params: object):
        final = None
        async for out in self.llm.encode(text, params, request_id=uuid.uuid4().hex):
            final = out
        assert final is not None
        return final.outputs.data

    def close(self) -> None:
        if self.llm is not None:
            self.llm.shutdown()
            self.llm = None  # collected now, not at interpreter exit
