"""Is a path a model the engines can load? The check every entry point runs on a model
setting before an engine starts: the server, the CLI and the training rounds."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_WEIGHTS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "*.pt")
_TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


class ModelCheckError(ValueError):
    """The model setting cannot be used; the message names the flag or variable and why."""


def is_ppm(path: str | Path) -> bool:
    """Is `path` our PPM (a one-label sequence classifier) rather than a policy?"""
    cfg_file = Path(path) / "config.json"
    if not cfg_file.exists():
        return False
    cfg = json.loads(cfg_file.read_text())
    archs = cfg.get("architectures") or []
    labels = len(cfg["id2label"]) if "id2label" in cfg else cfg.get("num_labels", 2)
    return any(a.endswith("ForSequenceClassification") for a in archs) and labels == 1


def check_model(
    given: str | None, flag: str, *, ppm: bool = False
) -> tuple[Literal["model", "hub"], Path | None]:
    """("model", its directory) for a local model directory holding a loadable config, weights
    and a tokenizer (with `ppm`: a one-label sequence classifier); ("hub", None) for a hub id
    that is not a local path."""
    from models.default_model import ModelUnavailable, embedded, ensure_model

    if spec := embedded(given):
        try:
            path = ensure_model(spec)
        except ModelUnavailable as e:
            raise ModelCheckError(f"{flag} {given or 'default'}: {e}") from None
    else:
        path = Path(given).expanduser()
    if not path.exists():
        if given and HUB_ID.fullmatch(given) and not given.startswith((".", "/", "~")):
            return "hub", None
        raise ModelCheckError(f"{flag} {given}: no such directory (nor a hub id like org/name)")
    where = f"{flag} {given}"
    if not path.is_dir():
        raise ModelCheckError(f"{where}: not a model (a file, not a model directory)")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ModelCheckError(f"{where}: not a model (no config.json in {path})")
    try:
        cfg = json.loads(cfg_file.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelCheckError(
            f"{where}: not a model (config.json is not valid JSON: {e})"
        ) from None
    if not isinstance(cfg, dict) or "model_type" not in cfg:
        raise ModelCheckError(f"{where}: not a model (config.json has no model_type)")
    if not any(next(path.glob(g), None) for g in _WEIGHTS):
        raise ModelCheckError(
            f"{where}: not a model (no weights: *.safetensors or *.bin in {path})"
        )
    if not any((path / t).is_file() for t in _TOKENIZER):
        raise ModelCheckError(
            f"{where}: no tokenizer files (tokenizer.json / tokenizer_config.json)"
        )
    try:
        from transformers import AutoConfig

        AutoConfig.from_pretrained(str(path))
    except Exception as e:
        raise ModelCheckError(f"{where}: not loadable by transformers ({e})") from None
    if ppm and not is_ppm(path):
        raise ModelCheckError(
            f"{where}: not a PPM (a one-label *ForSequenceClassification, as the rounds' PPM "
            "phase writes); a policy goes to --policy"
        )
    return "model", path
