"""Policy and reward-model backends: vLLM (in-process, GPU or CPU), transformers, remote HTTP;
the PPM definition; the embedded default model.

Names are imported on first use, so `python -m models.<module>` runs its module once (and
importing the package stays cheap)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.default_model import ModelUnavailable, ensure_default_model, resolve_model
    from models.factory import (
        LoadedModels,
        load_models,
        load_policy,
        load_reward_model,
        model_version,
        model_versions,
    )
    from models.settings import ModelSettings

_WHERE = {
    "ModelUnavailable": "models.default_model",
    "ensure_default_model": "models.default_model",
    "resolve_model": "models.default_model",
    "LoadedModels": "models.factory",
    "load_models": "models.factory",
    "load_policy": "models.factory",
    "load_reward_model": "models.factory",
    "model_version": "models.factory",
    "model_versions": "models.factory",
    "ModelSettings": "models.settings",
}

__all__ = [
    "LoadedModels",
    "ModelSettings",
    "ModelUnavailable",
    "ensure_default_model",
    "load_models",
    "load_policy",
    "load_reward_model",
    "model_version",
    "model_versions",
    "resolve_model",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
