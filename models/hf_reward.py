"""Our PPM through transformers, in-process: batched scoring of many step prefixes per call."""

from __future__ import annotations

from collections.abc import Sequence

from models.batcher import Batcher
from models.hf_loading import load_model, load_tokenizer
from models.ppm import logit_to_score, ppm_text
from search.protocols import ScoreRequest


class TransformersPPM:
    engine = "transformers"

    def __init__(
        self,
        path: str,
        device: str = "auto",
        dtype: str = "auto",
        max_batch: int = 64,
        max_length: int = 4096,
    ) -> None:
        from transformers import AutoModelForSequenceClassification

        self.path = path
        self.max_length = max_length
        # keep the end of long texts: the step being scored is at the end
        self.tokenizer = load_tokenizer(path, padding_side="right", truncation_side="left")
        self.model = load_model(AutoModelForSequenceClassification, path, device, dtype)
        if self.model.config.num_labels != 1:
            raise ValueError(
                f"{path} has {self.model.config.num_labels} labels; a PPM has one "
                "(for a two-class step-tag PRM set RSTAR_PPM_KIND=step_tag_prm)"
            )
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self._batcher: Batcher[ScoreRequest, float] = Batcher(self._score_batch, max_batch, "ppm")

    async def score(self, requests: Sequence[ScoreRequest]) -> list[float]:
        return await self._batcher.run(list(requests))

    def _score_batch(self, requests: list[ScoreRequest]) -> list[float]:
        import torch

        enc = self.tokenizer(
            [ppm_text(r) for r in requests],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_length,
        ).to(self.model.device)
        with torch.inference_mode():
            logits = self.model(**enc).logits[:, 0].float().tolist()
        return [logit_to_score(x) for x in logits]

    def close(self) -> None:
        self._batcher.close()
