"""The layers stay apart: search/ pulls in no engine, HTTP, cache or jail library, and
serving pulls in no trainer."""

import json
import subprocess
import sys

FORBIDDEN = ("vllm", "torch", "transformers", "httpx", "fastapi", "redis", "nsjail", "uvicorn")


def test_search_imports_no_engine_http_redis_or_jail():
    code = (
        "import json, sys\n"
        "import search, search.mcts, search.baselines, search.grading\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert bad == []


def loaded_by(*modules: str) -> list[str]:
    code = (
        f"import json, sys\nimport {', '.join(modules)}\nprint(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_serving_loads_no_trainer():
    """The server and the CLI stand without training/ (the serving image leaves it out), peft
    or accelerate."""
    loaded = loaded_by("server.app", "server.service", "clients.cli", "evaluation")
    bad = [m for m in loaded if m.split(".")[0] in ("training", "peft", "accelerate")]
    assert bad == []
