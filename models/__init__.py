"""Policy and reward-model backends: vLLM (in-process, GPU or CPU), transformers, remote HTTP;
the PPM definition; the embedded default model."""

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
