"""The HTTP service: FastAPI app, solver service, settings, protocol models."""
