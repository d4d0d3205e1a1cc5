"""Run a harness of benchmarks/ as `make bench` does and read its one JSON line."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_harness(script: str, *args: str, timeout: float = 300, cwd: Path | None = None) -> dict[str, Any]:
    """``benchmarks/<script> args`` with this interpreter (in ``cwd``); fails unless it exits 0 with one
    JSON line."""
    done = run_script(script, *args, timeout=timeout, cwd=cwd, check=True)
    (line,) = done.stdout.splitlines()
    result: dict[str, Any] = json.loads(line)
    return result


def run_script(
    script: str, *args: str, timeout: float = 120, cwd: Path | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """``benchmarks/<script> args`` as `make bench` runs it, with this interpreter (in ``cwd``), its output
    captured. Under `make test` (no PYTHONPATH) only installed packages and the script's own folder (and what
    it adds) can be imported: `am_diff.py` failed so on `tests`. The environment is kept as it is: PYTHONPATH
    is how a worktree's tests run its own code."""
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
        cwd=cwd,
    )


def harness_module(monkeypatch: pytest.MonkeyPatch, name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as the harnesses import it and one another (their folder on the
    path, for this test only)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module(name)
