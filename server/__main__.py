"""`python -m server`: serve the API on RSTAR_HOST:RSTAR_PORT (or --host/--port)."""

from __future__ import annotations

import argparse
import json
import logging

from models import ModelSettings
from sandbox import SandboxSettings
from server.logs import configure_logging
from server.settings import ServerSettings


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from server.app import create_app
    from server.service import SolverService

    settings = ServerSettings()
    ap = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    ap.add_argument("--host", default=settings.host)
    ap.add_argument("--port", type=int, default=settings.port)
    args = ap.parse_args(argv)
    settings = settings.model_copy(update={"host": args.host, "port": args.port})
    configure_logging(settings.log_format, settings.log_level)
    models, sandbox = ModelSettings(), SandboxSettings()
    for name, s in (("server", settings), ("models", models), ("sandbox", sandbox)):
        # SecretStr fields print as '**********'
        logging.info("%s settings: %s", name, json.dumps(s.model_dump(mode="json"), default=str))
    app = create_app(SolverService(settings, models, sandbox))
    # Our middleware logs each request with its id; uvicorn's own config would replace ours.
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
