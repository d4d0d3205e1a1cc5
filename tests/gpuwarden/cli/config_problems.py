"""What the config command tests share: the file lines its problems are named at."""

from __future__ import annotations

from pathlib import Path


def problem_lines(stderr: str, path: Path) -> list[int]:
    """The file line each ``error:`` line names, in the order printed."""
    lines = [" ".join(line.split()) for line in stderr.strip().splitlines() if line.startswith("error:")]
    assert all(line.startswith(f"error: {path}:") for line in lines), lines
    return [int(line.removeprefix(f"error: {path}:").split(":")[0]) for line in lines]
