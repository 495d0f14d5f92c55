"""search/ stays pure: importing it pulls in no engine, HTTP, cache or jail library."""

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
