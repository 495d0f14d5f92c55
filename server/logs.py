"""Structured logs: every record carries the request id of the request it belongs to (taken from
`X-Request-ID` or made up, echoed in the response), one access line per request, JSON lines
for log collectors or plain text on a terminal.

Libraries log through the same handler: uvicorn's, transformers' and vLLM's loggers propagate
to the root (vLLM's engine processes too, through the dictConfig file vLLM reads from
VLLM_LOGGING_CONFIG_PATH), Python warnings become log records, and progress bars are off. What
still reaches stderr as plain text (C++ warnings, an engine process's output before its logging
is set up, a crash) is wrapped into JSON records by `relay_stderr`, so a collector reading the
JSON stream never meets a line it cannot parse."""

from __future__ import annotations

import contextvars
import hashlib
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import BinaryIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
access_log = logging.getLogger("rstar.access")

HEADER = "x-request-id"
# Loggers that bring their own handlers: emptied, so their records reach the root's.
# (uvicorn.access stays as uvicorn leaves it: off, since our middleware logs each request.)
LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "vllm", "transformers")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class WeightDtypeFilter(logging.Filter):
    """vLLM warns once per tensor when it casts a float32 checkpoint to its bfloat16 engine
    dtype (about 100 lines for the tiny model): expected, so said once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        if not (msg.startswith("Attempted to load weight") and "into parameter" in msg):
            return True
        if self.seen:
            return False
        self.seen = True
        record.msg = msg + " (cast to the engine's dtype, as expected; the rest are not shown)"
        return True


def resolve_format(fmt: str) -> str:
    """`auto` is text on a terminal, JSON otherwise."""
    if fmt == "auto":
        return "text" if sys.stderr.isatty() else "json"
    return fmt


def log_handler(fmt: str = "auto") -> logging.Handler:
    """The one handler every record goes through."""
    handler = logging.StreamHandler()
    if resolve_format(fmt) == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                json_ensure_ascii=False,
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")
        )
    handler.addFilter(RequestIdFilter())
    handler.addFilter(WeightDtypeFilter())
    return handler


def engine_log_handler(fmt: str = "auto") -> logging.Handler:
    """`log_handler` as vLLM's dictConfig builds it in each of its processes, which also routes
    that process's libraries and warnings to it."""
    route_libraries(import_transformers=True)
    return log_handler(fmt)


def route_libraries(import_transformers: bool = False) -> None:
    """Records of libraries with handlers of their own, and warnings, to the root's handler.
    transformers adds its handler when first used, so it is routed when already imported or
    when `import_transformers` (a process that will load it anyway)."""
    logging.captureWarnings(True)
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    if "transformers" in sys.modules or (
        import_transformers and importlib.util.find_spec("transformers") is not None
    ):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_default_handler()
        hf_logging.enable_propagation()


def configure_logging(fmt: str = "auto", level: str = "INFO") -> None:
    """Root logging for the server process (uvicorn's own loggers included)."""
    root = logging.getLogger()
    root.handlers[:] = [log_handler(fmt)]
    root.setLevel(level.upper())
    route_libraries()


def route_engine_logs(fmt: str = "auto", level: str = "INFO") -> None:
    """Make the engines (imported later, and their child processes) log through `log_handler`:
    vLLM applies the dictConfig named by VLLM_LOGGING_CONFIG_PATH in every process it starts;
    transformers is told to propagate once imported; progress bars are turned off."""
    for var in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS"):  # read when tqdm is imported
        os.environ.setdefault(var, "1")
    fmt, level = resolve_format(fmt), level.upper()
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"rstar": {"()": f"{__name__}.engine_log_handler", "fmt": fmt}},
        "root": {"handlers": ["rstar"], "level": level},
        "loggers": {"vllm": {"handlers": [], "propagate": True, "level": level}},
    }
    text = json.dumps(config, sort_keys=True)
    name = f"rstar-logging-{os.getuid()}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    path = Path(tempfile.gettempdir()) / name
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    if os.environ.get("VLLM_CONFIGURE_LOGGING", "1") != "0":  # else vLLM refuses a config file
        os.environ.setdefault("VLLM_LOGGING_CONFIG_PATH", str(path))
    route_libraries(import_transformers=True)


def _record(message: str, level: str, logger: str = "stderr") -> bytes:
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}"
    rec = {"time": stamp, "level": level, "logger": logger, "message": message, "request_id": None}
    return json.dumps(rec, ensure_ascii=False).encode() + b"\n"


def relay(source: BinaryIO | None = None, sink: BinaryIO | None = None) -> None:
    """Copy lines from `source` (stdin) to `sink` (stdout): JSON lines as they are, any other
    line as a JSON record of logger `stderr` (a traceback as one record); blank lines and
    progress-bar redraws are dropped. Runs until every writer has closed its end."""
    source = source or sys.stdin.buffer
    sink = sink or sys.stdout.buffer
    traceback: list[str] = []
    for raw in source:
        text = raw.decode("utf-8", "replace").rstrip("\n").split("\r")[-1].rstrip()
        if traceback:
            traceback.append(text)
            if text and not text[0].isspace():  # the exception line ends it
                sink.write(_record("\n".join(traceback), "ERROR"))
                traceback = []
            continue
        if not text.strip():
            continue
        if text.startswith("Traceback (most recent call last)"):
            traceback = [text]
            continue
        if text.lstrip().startswith("{"):
            try:
                json.loads(text)
            except ValueError:
                pass
            else:
                sink.write(text.encode() + b"\n")
                sink.flush()
                continue
        sink.write(_record(text, "WARNING"))
        sink.flush()
    if traceback:
        sink.write(_record("\n".join(traceback), "ERROR"))
    sink.flush()


def relay_stderr() -> None:
    """Point this process's stderr (inherited by the engine processes it starts) at a small
    `relay` process writing to the real stderr. A process of its own, in its own session and
    deaf to signals, so a crash's last words still come out, as JSON."""
    read, write = os.pipe()
    subprocess.Popen(
        [sys.executable, "-c", f"from {__name__} import _relay_main; _relay_main()"],
        stdin=read,
        stdout=sys.stderr.fileno(),
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    os.close(read)
    sys.stderr.flush()
    os.dup2(write, sys.stderr.fileno())
    os.close(write)


def _relay_main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    relay()


class RequestIdMiddleware:
    """Pure ASGI (not BaseHTTPMiddleware, which would get in the way of streaming and of
    noticing disconnects)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(HEADER.encode(), b"").decode("latin-1")
        rid = given[:128] if given and given.isprintable() else uuid.uuid4().hex
        token = request_id.set(rid)
        t0, status = time.monotonic(), 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (HEADER.encode(), rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if scope.get("path") not in ("/healthz", "/readyz", "/metrics"):
                access_log.info(
                    "%s %s %s %.3fs",
                    scope.get("method"),
                    scope.get("path"),
                    status or "-",
                    time.monotonic() - t0,
                    extra={
                        "method": scope.get("method"),
                        "path": scope.get("path"),
                        "status": status,
                        "duration_s": round(time.monotonic() - t0, 4),
                    },
                )
            request_id.reset(token)
