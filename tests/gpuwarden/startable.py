"""What a file needs for ``config validate`` to pass it besides the settings a test is about: ``serve``'s API
token (from the environment, as serve takes it) and a query for ``anomaly run`` to score (its detector reads
any query, so no detector lacks one and nothing is warned of)."""

from __future__ import annotations

import pytest

ANOMALY = "anomaly:\n  detectors: [adaptive]\n  queries:\n    - {name: up, expr: up}\n"


def startable(monkeypatch: pytest.MonkeyPatch, text: str = "") -> str:
    """``text`` with ``ANOMALY`` after it, ``GPUWARDEN_API_TOKEN`` exported for the test."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    return text + ANOMALY
