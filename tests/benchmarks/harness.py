"""Run a harness of benchmarks/ as `make bench` does and read its one JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_harness(script: str, *args: str, timeout: float = 300, cwd: Path | None = None) -> dict[str, Any]:
    """``benchmarks/<script> args`` with this interpreter (in ``cwd``); fails unless it exits 0 with one
    JSON line."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
        cwd=cwd,
    )
    (line,) = done.stdout.splitlines()
    result: dict[str, Any] = json.loads(line)
    return result
