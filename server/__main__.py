"""`python -m server`: serve the API on RSTAR_HOST:RSTAR_PORT (or --host/--port).

Every other setting comes from RSTAR_* variables (server/settings.py, models/settings.py,
sandbox/settings.py). They are checked before anything slow starts, then the sandbox and the
engines start, then the server listens. A setting that cannot work ends it with exit status 2
and one line naming the setting; 3 means something else stopped it starting (--debug or
RSTAR_LOG_LEVEL=DEBUG add the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any

from server.logs import configure_logging, relay_stderr, resolve_format, route_engine_logs
from server.preflight import (
    ConfigError,
    arg_type,
    check_server,
    debug_wanted,
    load_settings,
    one_line,
    report,
    unknown_variables,
)
from server.settings import ServerSettings

PROG = "python -m server"
CONFIG_ERROR, STARTUP_FAILURE = 2, 3


class _StartupFailed(Exception):
    """The sandbox or an engine failed to start (the cause is chained)."""


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--host", help="listen address (default: RSTAR_HOST, else 127.0.0.1)")
    ap.add_argument(
        "--port",
        type=arg_type(ServerSettings, "port"),
        help="port (default: RSTAR_PORT, else 8000)",
    )
    ap.add_argument(
        "--debug", action="store_true", help="log at DEBUG level; errors with their traceback"
    )
    return ap


def _json_logs() -> bool:
    fmt = os.environ.get("RSTAR_LOG_FORMAT", "auto").strip().lower()
    return resolve_format(fmt if fmt in ("json", "text") else "auto") == "json"


def serve(
    host: str | None = None, port: int | None = None, debug: bool = False, prog: str = PROG
) -> int:
    """Check, start, serve until stopped; the exit status."""
    debug = debug_wanted(debug)
    flags = {"host": "--host"} if host is not None else {}
    flags |= {"port": "--port"} if port is not None else {}
    overrides: dict[str, Any] = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    try:
        settings = load_settings(ServerSettings, flags, **overrides)
    except ConfigError as e:
        if _json_logs():
            configure_logging("json", "INFO")
        report(prog, e, json_logs=_json_logs(), debug=debug)
        return CONFIG_ERROR
    level = "DEBUG" if debug else settings.log_level
    configure_logging(settings.log_format, level)
    json_logs = resolve_format(settings.log_format) == "json"
    for line in unknown_variables():
        logging.getLogger("rstar.config").warning(line)
    try:
        from models import ModelSettings
        from sandbox import SandboxSettings

        models, sandbox = load_settings(ModelSettings), load_settings(SandboxSettings)
        check_server(settings, models, sandbox, flags)
    except ConfigError as e:
        report(prog, e, json_logs=json_logs, debug=debug)
        return CONFIG_ERROR
    for name, s in (("server", settings), ("models", models), ("sandbox", sandbox)):
        # SecretStr fields print as '**********'
        logging.info("%s settings: %s", name, json.dumps(s.model_dump(mode="json"), default=str))
    route_engine_logs(settings.log_format, level)
    if json_logs:
        relay_stderr()
    try:
        return _run(settings, models, sandbox)
    except _StartupFailed as e:
        from models import ModelUnavailable
        from sandbox import SandboxUnavailable

        cause = e.__cause__ or e
        if isinstance(cause, SandboxUnavailable):
            cause = ConfigError("RSTAR_SANDBOX", sandbox.backend, one_line(cause))
        report(prog, cause, json_logs=json_logs, debug=debug)
        known = isinstance(cause, ConfigError | ModelUnavailable | SandboxUnavailable)
        return CONFIG_ERROR if known else STARTUP_FAILURE
    except KeyboardInterrupt:
        return 130


def _run(settings: ServerSettings, models: Any, sandbox: Any) -> int:
    """Start the service in the event loop uvicorn then serves on (the engines belong to the
    loop that started them), so a failure to start ends here, before uvicorn's own logs."""
    import asyncio

    import uvicorn

    from server.app import create_app
    from server.service import SolverService

    svc = SolverService(settings, models, sandbox)
    app = create_app(svc)  # its lifespan finds the service started, and closes it at shutdown
    # Our middleware logs each request with its id; uvicorn's own config would replace ours.
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)

    serving = False

    async def main() -> None:
        nonlocal serving
        try:
            await svc.start()
        except Exception as e:
            await svc.close()
            raise _StartupFailed(str(e)) from e
        serving = True
        await server.serve()

    try:
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(main())
    except KeyboardInterrupt:
        if not serving:
            raise
    return 0  # stopped by a signal, after a graceful shutdown


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return serve(args.host, args.port, args.debug)


if __name__ == "__main__":
    raise SystemExit(main())
