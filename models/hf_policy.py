"""The transformers policy: in-process batched generation with stop strings (CPU or GPU).

Concurrent `generate` calls (from many searches) are gathered by a `Batcher` into one
`model.generate` per sampling setting, each prompt repeated `n` times.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from models.batcher import Batcher
from models.chat_template import chat_prompt
from models.hf_loading import load_model, load_tokenizer
from search.protocols import Generation, GenerationRequest
from search.steps import cut_at_stop


class TransformersPolicy:
    engine = "transformers"

    def __init__(
        self, path: str, device: str = "auto", dtype: str = "auto", max_batch: int = 64
    ) -> None:
        from transformers import AutoModelForCausalLM

        self.path = path
        self.tokenizer = load_tokenizer(path, padding_side="left")
        self.model = load_model(AutoModelForCausalLM, path, device, dtype)
        self.generated_tokens = 0
        self._batcher: Batcher[GenerationRequest, list[Generation]] = Batcher(
            self._generate_batch, max_batch, "policy"
        )

    @property
    def batch_sizes(self) -> list[int]:
        return self._batcher.batches

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Generation]]:
        return await self._batcher.run(list(requests))

    async def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str | None:
        return chat_prompt(self.tokenizer, messages)

    def _generate_batch(self, requests: list[GenerationRequest]) -> list[list[Generation]]:
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            key = (r.temperature, r.top_p if r.temperature > 0 else 1.0, r.max_tokens, r.stop)
            groups.setdefault(key, []).append(i)
        out: list[list[Generation]] = [[] for _ in requests]
        for idx in groups.values():
            prompts = [requests[i].prompt for i in idx for _ in range(requests[i].n)]
            gens = self._run(prompts, requests[idx[0]])
            k = 0
            for i in idx:
                out[i] = gens[k : k + requests[i].n]
                k += requests[i].n
        return out

    def _run(self, prompts: list[str], params: GenerationRequest) -> list[Generation]:
        import torch

        tok, model = self.tokenizer, self.model
        enc = tok(prompts, return_tensors="pt", padding=True).to(model.device)
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id,
        }
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=tok)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        with torch.inference_mode():
            out = model.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1] :]
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        gens = []
        for row, prompt_len in zip(new.tolist(), prompt_lens, strict=True):
            n, ended = len(row), False
            for j, t in enumerate(row):
                if t == tok.pad_token_id or t == tok.eos_token_id:
                    n = j + 1 if t == tok.eos_token_id else j
                    ended = True
                    break
            text = tok.decode(row[:n], skip_special_tokens=True)
            text, stop = cut_at_stop(text, params.stop)
            truncated = stop is None and not ended and n >= params.max_tokens
            gens.append(Generation(text, stop, n, int(prompt_len), truncated))
            self.generated_tokens += n
        return gens

    def close(self) -> None:
        self._batcher.close()
