"""Every leaf command of the CLI with its full name, for the tests that go over them all."""

from __future__ import annotations

from typing import Any


def _commands(command: Any, path: str) -> list[tuple[str, Any]]:
    """Every leaf command under ``command`` with its full name (Typer's click commands)."""
    if hasattr(command, "commands"):
        return [item for name, sub in command.commands.items() for item in _commands(sub, f"{path} {name}")]
    return [(path, command)]
