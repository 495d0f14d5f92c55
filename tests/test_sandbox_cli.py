"""`python -m sandbox exec`: one JSON object; exit 0 unless the sandbox itself failed."""

import json
import os
import subprocess
import sys


def run_cli(*args, stdin="", env=None):
    return subprocess.run(
        [sys.executable, "-m", "sandbox", "exec", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_runs_stdin_and_prints_json():
    p = run_cli("-", stdin="print(sum(range(10)))\n")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["ok"] is True and out["stdout"] == "45\n" and out["backend"] == "nsjail"
    assert set(out) == {"ok", "stdout", "error", "timed_out", "killed", "elapsed_ms", "backend"}


def test_failing_code_still_exits_zero(tmp_path):
    f = tmp_path / "step.py"
    f.write_text("import time\ntime.sleep(60)\n")
    p = run_cli(str(f), "--timeout-s", "1")
    assert p.returncode == 0
    out = json.loads(p.stdout)
    assert out["ok"] is False and out["timed_out"] is True


def test_sandbox_failure_exits_non_zero():
    p = run_cli("-", stdin="print(1)\n", env={"RSTAR_SANDBOX_NSJAIL_PATH": "/bin/false"})
    assert p.returncode == 2 and "RSTAR_SANDBOX=local" in p.stderr and p.stdout == ""


def test_bad_input_is_a_clear_error():
    p = run_cli("/no/such/file.py")
    assert p.returncode == 2 and "cannot read /no/such/file.py" in p.stderr
    p = run_cli("-", stdin="print(1)\n", env={"RSTAR_SANDBOX": "docker"})
    assert p.returncode == 2 and "RSTAR_SANDBOX" in p.stderr
