"""Set-up for every test."""

from __future__ import annotations

import os

import pytest

# Tests of what a pipe or file receives expect no ``COLUMNS``/``LINES``: an exported ``COLUMNS`` (and
# pytest-xdist's workers set ``COLUMNS=80``) narrows the tables they read, and the CLI's module-level Rich
# consoles take it when they are made, at import: so it goes before any test module imports them.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)


@pytest.fixture(autouse=True)
def _no_terminal_size_from_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same for consoles made during a test; a test that wants a width sets it itself."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)
