"""Building the configured policy and reward model (see `models.settings`)."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.default_model import ModelUnavailable, resolve_model
from models.settings import ModelSettings
from search.protocols import Policy, RewardModel

log = logging.getLogger(__name__)


def _require_vllm() -> None:
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        raise ModelUnavailable(
            "vLLM is not installed: pip install -e '.[cpu]' (CPU) or '.[gpu]' (CUDA), "
            "or choose another engine with RSTAR_POLICY_ENGINE=transformers / remote"
        ) from e


def _secret(settings: ModelSettings) -> str | None:
    return settings.remote_api_key.get_secret_value() if settings.remote_api_key else None


def load_policy(settings: ModelSettings) -> Any:
    engine = settings.policy_engine
    if engine == "remote":
        if not settings.policy_url:
            raise ModelUnavailable("RSTAR_POLICY_ENGINE=remote needs RSTAR_POLICY_URL (…/v1)")
        from models.remote import RemotePolicy

        return RemotePolicy(
            settings.policy_url, settings.policy_model, settings.remote_timeout_s, _secret(settings)
        )
    model = resolve_model(settings.policy_model)
    if engine == "vllm":
        _require_vllm()
        from models.vllm_policy import VLLMPolicy

        return VLLMPolicy(model, settings)
    from models.hf_policy import TransformersPolicy

    return TransformersPolicy(model, settings.device, settings.dtype, settings.max_batch)


def load_reward_model(settings: ModelSettings) -> Any | None:
    """None when no PPM is configured: the search then ranks answers by agreement."""
    if not settings.ppm_model and settings.ppm_engine != "remote":
        return None
    engine = settings.ppm_engine
    if engine == "remote":
        if not settings.ppm_url:
            raise ModelUnavailable("RSTAR_PPM_ENGINE=remote needs RSTAR_PPM_URL (…/v1 or root)")
        from models.remote import RemoteReward

        return RemoteReward(
            settings.ppm_url,
            settings.ppm_model,
            settings.ppm_kind,
            settings.prm_step_tag,
            settings.remote_timeout_s,
            _secret(settings),
            settings.prm_aggregation,
        )
    model = resolve_model(settings.ppm_model)
    if engine == "vllm" or settings.ppm_kind == "step_tag_prm":
        _require_vllm()
        from models.vllm_reward import VLLMReward

        return VLLMReward(model, settings, settings.ppm_kind)
    from models.hf_reward import TransformersPPM

    return TransformersPPM(model, settings.device, settings.dtype, settings.max_batch)


def model_version(name_or_path: str | None, url: str | None = None) -> str | None:
    """A name that changes when the weights do: a local directory's name plus a digest of its
    files' names, sizes and modification times; a hub id or remote model as given (with the
    server's URL). Keys the expansion cache, so new checkpoints never see old expansions."""
    if name_or_path is None and url is None:
        return None
    if url is not None:
        return f"{name_or_path}@{url}"
    path = Path(resolve_model(name_or_path))
    if not path.is_dir():
        return str(name_or_path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return f"{path.name}-{h.hexdigest()[:12]}"


def model_versions(settings: ModelSettings) -> dict[str, str | None]:
    s = settings
    return {
        "policy": model_version(
            s.policy_model, s.policy_url if s.policy_engine == "remote" else None
        ),
        "reward_model": model_version(s.ppm_model, s.ppm_url if s.ppm_engine == "remote" else None)
        if s.ppm_model or s.ppm_engine == "remote"
        else None,
    }


@dataclass
class LoadedModels:
    policy: Policy
    reward_model: RewardModel | None

    async def aclose(self) -> None:
        for m in (self.policy, self.reward_model):
            if m is None:
                continue
            with contextlib.suppress(Exception):
                if hasattr(m, "aclose"):
                    await m.aclose()
                elif hasattr(m, "close"):
                    res = m.close()
                    if inspect.isawaitable(res):
                        await res


def load_models(settings: ModelSettings | None = None) -> LoadedModels:
    s = settings or ModelSettings()
    policy = load_policy(s)
    try:
        reward = load_reward_model(s)
    except BaseException:
        with contextlib.suppress(Exception):
            getattr(policy, "close", lambda: None)()
        raise
    return LoadedModels(policy, reward)
