"""A model's chat template as the search's text step format reads it: the problem's chat with
the assistant's turn opened, as text the engine's tokenizer reads back unchanged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def chat_prompt(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> str | None:
    """`messages` in `tokenizer`'s chat template with the generation prompt; None when it has
    no template. A BOS the template writes is left out when the tokenizer adds one to every
    prompt itself, so that the engine does not read two."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    text = tokenizer.apply_chat_template(
        [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
    )
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos):
        ids = tokenizer("x").input_ids
        if ids and ids[0] == tokenizer.bos_token_id:
            text = text[len(bos) :]
    return text
