"""`python -m sandbox exec FILE|-`: run a file as one step under the configured backend.

Prints one JSON object (ok, stdout, error, timed_out, killed, elapsed_ms, backend). Exits 0
whether or not the code succeeded; 2 only when the sandbox itself could not run it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from sandbox import SandboxSettings, SandboxUnavailable, create_sandbox
from search.protocols import ExecLimits


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m sandbox",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("exec", help="run FILE ('-' for stdin) as one step")
    ex.add_argument("file", help="Python file to run, or - for stdin")
    ex.add_argument("--timeout-s", type=float, help="wall clock (default: RSTAR_SANDBOX_TIMEOUT_S)")
    ex.add_argument("--memory-mb", type=int, help="memory a step may add")
    args = ap.parse_args(argv)

    try:
        code = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        print(f"cannot read {args.file}: {e}", file=sys.stderr)
        return 2
    try:
        settings = SandboxSettings(workers=1)
    except ValidationError as e:
        from server.preflight import settings_error

        print(f"{ap.prog}: {settings_error(SandboxSettings, e)}", file=sys.stderr)
        return 2
    limits = ExecLimits(
        timeout_s=args.timeout_s or settings.timeout_s,
        memory_mb=args.memory_mb or settings.memory_mb,
        output_bytes=settings.output_bytes,
    )
    pool = create_sandbox(settings)
    try:
        pool.start()
        result = pool.run_sync(code, limits)
    except SandboxUnavailable as e:
        print(f"sandbox unavailable: {e}", file=sys.stderr)
        return 2
    finally:
        pool.close()
    if result.killed == "sandbox":
        print(f"sandbox failed: {result.error}", file=sys.stderr)
        return 2
    out = {
        "ok": result.ok,
        "stdout": result.stdout,
        "error": result.error,
        "timed_out": result.timed_out,
        "killed": result.killed,
        "elapsed_ms": round(result.elapsed_s * 1000, 3),
        "backend": pool.name,
    }
    print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
