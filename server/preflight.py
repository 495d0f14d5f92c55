"""Checking the configuration before anything slow starts.

A setting that cannot work is reported in one line that names it (its `RSTAR_…` variable, or
the `--flag` it came from), the value given and what would be accepted, so a new user fixes it
without reading a traceback. Everything here only reads (the port is bound and released).
"""

from __future__ import annotations

import difflib
import errno
import importlib.util
import json
import logging
import operator
import os
import socket
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import annotated_types as at
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from models.checks import HUB_ID

log = logging.getLogger("rstar.config")

S = TypeVar("S", bound=BaseSettings)
MODEL_ACCEPTS = "a model directory, a hub id (org/name), 'default' or 'tiny'"
PPM_ACCEPTS = "a PPM directory or hub id (a round's PPM phase writes one)"
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "added_tokens.json",
    "special_tokens_map.json",
)


def assign(name: str, value: object) -> str:
    """How a setting is given: `RSTAR_X=value` for a variable, `--x value` for a flag."""
    shown = "(unset)" if value is None else value
    return f"{name}{' ' if name.startswith('-') else '='}{shown}"


class ConfigError(ValueError):
    """A setting that cannot work: `name` (env variable or flag), the value, the problem."""

    def __init__(self, name: str, value: object, problem: str) -> None:
        self.name, self.value, self.problem = name, value, problem
        super().__init__(f"{assign(name, value)}: {problem}")


def one_line(exc: BaseException) -> str:
    """An error's message on one line (multi-line messages joined with '; ')."""
    lines = [ln.strip() for ln in (str(exc) or type(exc).__name__).splitlines() if ln.strip()]
    return "; ".join(lines)


def debug_wanted(flag: bool = False) -> bool:
    """--debug, or RSTAR_LOG_LEVEL=DEBUG: errors come with their traceback."""
    return flag or os.environ.get("RSTAR_LOG_LEVEL", "").strip().upper() == "DEBUG"


def report(prog: str, exc: BaseException, *, json_logs: bool, debug: bool) -> None:
    """The error as one line on stderr: a JSON log record when the logs are JSON (a collector
    reads every line), else `prog: message`; the traceback only when debugging."""
    line = one_line(exc)
    if json_logs:
        extra = {"setting": exc.name} if isinstance(exc, ConfigError) else {}
        log.error(line, exc_info=exc if debug else None, extra=extra)
        return
    print(f"{prog}: {line}", file=sys.stderr)
    if debug:
        traceback.print_exception(exc, file=sys.stderr)


# --- ranges and settings -------------------------------------------------------------------------


_LIMITS = (
    (at.Ge, "ge", "≥", operator.ge),
    (at.Gt, "gt", ">", operator.gt),
    (at.Le, "le", "≤", operator.le),
    (at.Lt, "lt", "<", operator.lt),
)


def _limits(info: FieldInfo) -> list[tuple[str, Any, Callable[[Any, Any], bool]]]:
    """(sign, limit, test) of each bound a field is declared with (ge=1, le=64, …)."""
    return [
        (sign, getattr(m, attr), test)
        for m in info.metadata
        for kind, attr, sign, test in _LIMITS
        if isinstance(m, kind)
    ]


def bounds(info: FieldInfo) -> str:
    """'≥ 1 and ≤ 64' for a field declared with ge=1, le=64 ('' when unbounded)."""
    return " and ".join(f"{sign} {limit}" for sign, limit, _ in _limits(info))


def arg_type(model: type[BaseModel], field: str, kind: type = int) -> Callable[[str], Any]:
    """An argparse `type` accepting what `model.field` accepts: a value out of range is refused
    the way argparse refuses any bad value (the flag, the range and the value; exit status 2)."""
    import argparse

    info = model.model_fields[field]
    word = "a whole number" if kind is int else "a number"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {word}, got {text!r}") from None
        if not all(test(value, limit) for _, limit, test in _limits(info)):
            raise argparse.ArgumentTypeError(f"must be {bounds(info)}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


def env_name(cls: type[BaseSettings], field: str) -> str:
    """The environment variable a settings field is read from; `section.field` for a field of
    a nested model (search.max_depth: RSTAR_SEARCH_MAX_DEPTH)."""
    if field.startswith("RSTAR_"):  # an alias
        return field
    section, _, nested = field.partition(".")
    if nested:
        delimiter = cls.model_config.get("env_nested_delimiter") or "__"
        return f"{cls.model_config.get('env_prefix', '')}{section}{delimiter}{nested}".upper()
    info = cls.model_fields.get(field)
    alias = getattr(info, "validation_alias", None) if info else None
    choices = getattr(alias, "choices", None)
    if choices and isinstance(choices[0], str) and choices[0].startswith("RSTAR_"):
        return choices[0]
    return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def _section(cls: type[BaseModel], name: str) -> type[BaseModel] | None:
    """The model a field nests (ServerSettings.search: SearchSettings), if it nests one."""
    info = cls.model_fields.get(name)
    kind = info.annotation if info else None
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def _field(cls: type[BaseModel], name: str) -> FieldInfo | None:
    section, _, nested = name.partition(".")
    if nested and (model := _section(cls, section)) is not None:
        return model.model_fields.get(nested)
    if name in cls.model_fields:
        return cls.model_fields[name]
    for info in cls.model_fields.values():
        choices = getattr(info.validation_alias, "choices", None) or ()
        if name in choices:
            return info
    return None


def _problem(err: Mapping[str, Any], info: FieldInfo | None) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        signs = {attr: sign for _, attr, sign, _ in _LIMITS}
        given = " and ".join(f"{signs[k]} {v}" for k, v in ctx.items() if k in signs)
        return f"must be {(bounds(info) if info else '') or given}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return "must be a whole number"
    if kind in ("float_parsing", "float_type"):
        return "must be a number"
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return msg[:1].lower() + msg[1:]


def settings_error(
    cls: type[BaseModel], e: ValidationError, names: Mapping[str, str] | None = None
) -> ConfigError:
    """A ValidationError of a settings class as one ConfigError: the first bad setting, the
    others (if any) after it on the same line."""
    found: list[ConfigError] = []
    for err in e.errors():
        loc = [str(x) for x in err["loc"]]
        field = ".".join(loc[:2]) if len(loc) > 1 and _section(cls, loc[0]) else "".join(loc[:1])
        name = (names or {}).get(field) or (
            env_name(cls, field) if issubclass(cls, BaseSettings) else field
        )
        value = err.get("input")
        value = value if isinstance(value, str | int | float) else json.dumps(value, default=str)
        found.append(ConfigError(name, value, _problem(err, _field(cls, field))))
    first, *others = found
    if others:
        also = "; also " + "; ".join(str(f) for f in others)
        return ConfigError(first.name, first.value, first.problem + also)
    return first


# RSTAR_ variables read outside the settings classes of setting_names
OTHER_VARIABLES = {
    "RSTAR_API_KEY": "the key `rstar solve|eval --url` send (clients/client.py)",
    "RSTAR_MODEL_CACHE": "where embedded models are prepared (models/default_model.py)",
    "RSTAR_SANDBOX_CHECK": "0 skips the image's sandbox check (scripts/entrypoint.sh)",
    "RSTAR_FEATURE_CACHE": "the PPM head's feature cache (training/ppm_head.py)",
    "RSTAR_TRAIN_ALLOCATOR": "the trainers' allocator (training/allocator.py)",
}


def setting_names() -> set[str]:
    """Every RSTAR_ variable the server, the CLI or the trainers read."""
    from models.settings import ModelSettings
    from sandbox.settings import SandboxSettings
    from server.settings import ServerSettings

    names = set(OTHER_VARIABLES)
    for cls in (ServerSettings, ModelSettings, SandboxSettings):
        for field, info in cls.model_fields.items():
            names.add(env_name(cls, field))
            choices = getattr(info.validation_alias, "choices", None) or ()
            names |= {c for c in choices if isinstance(c, str) and c.startswith("RSTAR_")}
            if (section := _section(cls, field)) is not None:
                names |= {env_name(cls, f"{field}.{sub}") for sub in section.model_fields}
    return names


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """A warning for each RSTAR_ variable that nothing reads, naming the closest one that is
    read: a mistyped name would otherwise be ignored without a word."""
    known = setting_names()
    lines = []
    for name in sorted(os.environ if environ is None else environ):
        upper = name.upper()
        if not upper.startswith("RSTAR_") or upper in known:
            continue
        close = difflib.get_close_matches(upper, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        lines.append(f"{name} is not a setting, and is ignored{hint}")
    return lines


def load_settings(cls: type[S], names: Mapping[str, str] | None = None, **overrides: Any) -> S:
    """`cls(**overrides)` from the environment, a bad value raising a ConfigError that names
    the variable (or the flag in `names` it came from)."""
    try:
        return cls(**overrides)
    except ValidationError as e:
        raise settings_error(cls, e, names) from None


# --- the server ----------------------------------------------------------------------------------


def check_port(
    host: str, port: int, host_name: str = "RSTAR_HOST", port_name: str = "RSTAR_PORT"
) -> None:
    """The address can be listened on now (bound with SO_REUSEADDR, as uvicorn does, then
    released: the engines take a while to start, and their processes must not inherit it)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise ConfigError(
            host_name, host, f"not an address of this machine ({e}); e.g. 127.0.0.1 or 0.0.0.0"
        ) from None
    family, type_, proto, _, addr = infos[0]
    with socket.socket(family, type_, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(
                    port_name, port, f"{host}:{port} is already in use; choose a free port"
                ) from None
            if e.errno == errno.EACCES:
                raise ConfigError(
                    port_name, port, f"not allowed to listen on it ({e.strerror}); use ≥ 1024"
                ) from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise ConfigError(
                    host_name, host, "not an address of this machine; e.g. 127.0.0.1 or 0.0.0.0"
                ) from None
            raise ConfigError(port_name, port, f"cannot listen on {host}: {e.strerror}") from None


def check_server_limits(settings: Any) -> None:
    """Defaults above their own caps, API keys that cannot be read, a cache URL that is not
    one."""
    from server.auth import ApiKeys, KeyConfigError

    s = settings
    for default, cap in (
        ("default_rollouts", "max_rollouts"),
        ("default_time_limit_s", "max_time_limit_s"),
    ):
        if getattr(s, default) > getattr(s, cap):
            raise ConfigError(
                env_name(type(s), default),
                getattr(s, default),
                f"must be ≤ {env_name(type(s), cap)} ({getattr(s, cap)})",
            )
    if s.api_keys_file:
        p = Path(s.api_keys_file)
        if not p.is_file() or not os.access(p, os.R_OK):
            why = "not a file" if p.exists() else "no such file"
            why = "not readable by this user" if p.is_file() else why
            raise ConfigError(
                "RSTAR_API_KEYS_FILE",
                s.api_keys_file,
                f"{why}; give a readable file of name:key lines (one per line, # comments)",
            )
    try:
        ApiKeys.load(s.api_keys.get_secret_value() if s.api_keys else None, s.api_keys_file)
    except KeyConfigError as e:
        where, _, problem = str(e).partition(": ")
        name = "RSTAR_API_KEYS" if where == "RSTAR_API_KEYS" else "RSTAR_API_KEYS_FILE"
        shown = "(hidden)" if name == "RSTAR_API_KEYS" else where
        raise ConfigError(name, shown, f"{problem} (entries are name:key or bare keys)") from None
    if s.redis_url and not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            "RSTAR_REDIS_URL", s.redis_url, "not a Redis URL; e.g. redis://host:6379/0"
        )


def check_sandbox(settings: Any) -> None:
    """The configured backend can be found (whether it can run is seen when it starts, before
    the engines)."""
    if settings.backend != "nsjail":
        return
    if settings.nsjail_path:
        p = Path(settings.nsjail_path)
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise ConfigError(
                "RSTAR_SANDBOX_NSJAIL_PATH",
                settings.nsjail_path,
                "not an executable file; give the nsjail binary, or unset it for the bundled one",
            )
        return
    from sandbox.nsjail import nsjail_binary
    from sandbox.pool import SandboxUnavailable

    try:
        nsjail_binary(settings)
    except (SandboxUnavailable, OSError) as e:
        raise ConfigError("RSTAR_SANDBOX", "nsjail", one_line(e)) from None


# --- models --------------------------------------------------------------------------------------


def _check_url(url: str | None, name: str, needed_by: str, example: str) -> None:
    import httpx

    if not url:
        raise ConfigError(name, None, f"{needed_by} needs it; e.g. {example}")
    try:
        u = httpx.URL(url)
    except httpx.InvalidURL as e:
        raise ConfigError(name, url, f"not a URL ({e}); e.g. {example}") from None
    if u.scheme not in ("http", "https") or not u.host:
        raise ConfigError(name, url, f"not an http(s) URL; e.g. {example}")


def _check_hub_id(repo: str, name: str, accepts: str = MODEL_ACCEPTS) -> None:
    """A hub id is fine when it is in the local cache, or the hub can be asked about it."""
    import huggingface_hub as hub
    from huggingface_hub import constants

    if isinstance(hub.try_to_load_from_cache(repo, "config.json"), str):
        return
    if constants.HF_HUB_OFFLINE:
        raise ConfigError(
            name,
            repo,
            "a hub id that is not in the local cache, and HF_HUB_OFFLINE is set; "
            f"download it first, or give {accepts}",
        )
    try:
        hub.model_info(repo, timeout=10)
    except hub.errors.RepositoryNotFoundError:
        raise ConfigError(
            name,
            repo,
            f"no such model on the Hugging Face hub (or it is private: set HF_TOKEN); "
            f"give {accepts}",
        ) from None
    except hub.errors.HfHubHTTPError as e:  # the hub answered, but not clearly: let it try
        log.warning("%s=%s: the hub could not confirm it (%s)", name, repo, one_line(e))
    except Exception as e:
        raise ConfigError(
            name,
            repo,
            f"not in the local cache, and the Hugging Face hub cannot be reached "
            f"({one_line(e)}); give a model directory, or run where the hub can be reached",
        ) from None


def check_model_path(value: str | None, name: str, accepts: str = MODEL_ACCEPTS) -> Path | None:
    """A local model directory (config, weights, tokenizer), an embedded model, or a hub id
    this machine can fetch; the local directory's path (None for a hub id)."""
    from models.checks import ModelCheckError, check_model

    try:
        kind, path = check_model(value, name)
    except ModelCheckError as e:
        problem = (
            str(e).removeprefix(f"{name} {value or 'default'}: ").removeprefix(f"{name} {value}: ")
        )
        raise ConfigError(name, value, f"{problem}; give {accepts}") from None
    if kind == "hub":
        _check_hub_id(str(value), name, accepts)
        return None
    return path


def _tokenizer_has(path: Path, token: str) -> bool:
    needle = json.dumps(token)  # as the token appears in the tokenizer's JSON files
    return any(
        (path / f).is_file() and needle in (path / f).read_text(encoding="utf-8", errors="replace")
        for f in _TOKENIZER_FILES
    )


def check_step_format(settings: Any, names: Mapping[str, str] | None = None) -> None:
    """A prompt style the step format can read: the text format frames the problem in the
    model's chat template with the system prompt (`system`) or without (`bare`); the worked
    examples of `few_shot` and `chat` are code steps, which would teach a plain-step model the
    other format. (A request's own step_format reads those styles as `system`.)"""
    from models.settings import ModelSettings
    from search.formats import TEXT_PROMPT_STYLES

    s = settings

    def n(field: str) -> str:
        return (names or {}).get(field) or env_name(ModelSettings, field)

    if s.step_format == "text" and s.prompt_style not in (None, *TEXT_PROMPT_STYLES):
        raise ConfigError(
            n("prompt_style"),
            s.prompt_style,
            f"its worked examples are code steps, meaningless with "
            f"{assign(n('step_format'), 'text')}; use system (the chat template with the system "
            "prompt) or bare (without it), or unset it",
        )


def check_models(settings: Any, names: Mapping[str, str] | None = None) -> None:
    """Engines installed, remote URLs given, model paths loadable, the PPM kind fitting the PPM.
    Cheap checks first: the model checks read configs (and may prepare an embedded model)."""
    from models.default_model import embedded
    from models.settings import ModelSettings

    s = settings

    def n(field: str) -> str:
        return (names or {}).get(field) or env_name(ModelSettings, field)

    check_step_format(s, names)

    has_ppm = bool(s.ppm_model) or s.ppm_engine == "remote"
    vllm = importlib.util.find_spec("vllm") is not None
    for field, engine in (
        ("policy_engine", s.policy_engine),
        ("ppm_engine", s.ppm_engine if has_ppm else None),
    ):
        if engine == "vllm" and not vllm:
            raise ConfigError(
                n(field),
                "vllm",
                "vLLM is not installed (pip install -e '.[cpu]' or '.[gpu]'); "
                "or choose transformers or remote",
            )
    if has_ppm and s.ppm_kind == "step_tag_prm" and s.ppm_engine != "remote" and not vllm:
        raise ConfigError(
            n("ppm_kind"), "step_tag_prm", "runs on vLLM, which is not installed; use ppm"
        )
    if s.policy_engine == "remote":
        _check_url(
            s.policy_url,
            n("policy_url"),
            assign(n("policy_engine"), "remote"),
            "http://127.0.0.1:8001/v1",
        )
    if s.ppm_engine == "remote" and has_ppm:
        _check_url(
            s.ppm_url, n("ppm_url"), assign(n("ppm_engine"), "remote"), "http://127.0.0.1:8002"
        )
    local = [("ppm_model", s.ppm_model)] if s.ppm_model and s.ppm_engine != "remote" else []
    if s.policy_engine != "remote":
        local.insert(0, ("policy_model", s.policy_model))
    accepts = {"policy_model": MODEL_ACCEPTS, "ppm_model": PPM_ACCEPTS}
    for field, value in local:  # a missing path first, before any model is read
        if embedded(value) or Path(value).expanduser().exists():
            continue
        if not HUB_ID.fullmatch(value) or value.startswith((".", "/", "~")):
            raise ConfigError(n(field), value, f"no such directory; give {accepts[field]}")
    paths = {field: check_model_path(value, n(field), accepts[field]) for field, value in local}
    ppm = paths.get("ppm_model")
    if ppm is None:
        return
    from models.checks import is_ppm

    if s.ppm_kind == "ppm" and not is_ppm(ppm):
        raise ConfigError(
            n("ppm_model"),
            s.ppm_model,
            f"not a PPM (a one-label *ForSequenceClassification) as "
            f"{assign(n('ppm_kind'), 'ppm')} needs; for a step-tag PRM (Qwen2.5-Math-PRM style) "
            f"set {assign(n('ppm_kind'), 'step_tag_prm')}",
        )
    if s.ppm_kind == "step_tag_prm":
        if is_ppm(ppm):
            raise ConfigError(
                n("ppm_kind"),
                "step_tag_prm",
                f"{s.ppm_model} is a one-label PPM; set {assign(n('ppm_kind'), 'ppm')}",
            )
        if not _tokenizer_has(ppm, s.prm_step_tag):
            raise ConfigError(
                n("prm_step_tag"),
                s.prm_step_tag,
                f"not a token of {s.ppm_model}'s tokenizer; "
                "give the step separator the PRM was trained with",
            )


def check_server(
    server: Any, models: Any, sandbox: Any, names: Mapping[str, str] | None = None
) -> None:
    """Everything `python -m server` can check before it starts the sandbox and the engines."""
    names = names or {}
    check_port(
        server.host, server.port, names.get("host", "RSTAR_HOST"), names.get("port", "RSTAR_PORT")
    )
    check_server_limits(server)
    check_sandbox(sandbox)
    check_models(models, names)
