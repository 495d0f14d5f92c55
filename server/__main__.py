"""`python -m server`: serve the API on RSTAR_HOST:RSTAR_PORT (or --host/--port)."""

from __future__ import annotations

import argparse
import json
import logging

from models import ModelSettings
from sandbox import SandboxSettings
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    models, sandbox = ModelSettings(), SandboxSettings()
    for name, s in (("server", settings), ("models", models), ("sandbox", sandbox)):
        # SecretStr fields print as '**********'
        logging.info("%s settings: %s", name, json.dumps(s.model_dump(mode="json"), default=str))
    app = create_app(SolverService(settings, models, sandbox))
    uvicorn.run(app, host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
