"""The restart-equivalence fuzz runs on the code as it is, and reports a rebuilt engine that differs."""

from __future__ import annotations

import importlib
import json
import logging
from types import ModuleType

import pytest

from alerting.engine import IncidentEngine
from tests.benchmarks.harness import BENCHMARKS, run_harness


@pytest.fixture
def fuzz(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``benchmarks/restart_fuzz.py``, imported as it runs (its folder on the path)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("restart_fuzz")


def test_a_few_seeds_run_straight_and_restarted_alike() -> None:
    result = run_harness("restart_fuzz.py", "--seeds", "0-1", "--steps", "20", timeout=120)
    assert (result["seeds"], result["steps"], result["divergent"]) == (2, 20, [])


def test_an_engine_rebuilt_without_its_held_announcements_is_reported_at_the_step_that_shows_it(
    fuzz: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A rebuild that forgets the incidents held for their announce delay (never announced after a restart).
    reload = IncidentEngine._reload

    def forgetful(engine: IncidentEngine) -> None:
        reload(engine)
        engine._unannounced.clear()
        engine._reannounce.clear()

    monkeypatch.setattr(IncidentEngine, "_reload", forgetful)
    disabled = logging.root.manager.disable
    result = fuzz.main(["--seeds", "5", "--steps", "20"])
    assert result["divergent"] == [5]
    # Run in this worker, it gives logging back: later tests here read their logs (11 found none in CI).
    assert logging.root.manager.disable == disabled
    first = result["first"]["5"]
    assert first["restarts"][0] <= first["step"]
    assert first["diff"][:2] == ["--- straight", "+++ restarted"]
    assert any(line.startswith(("-", "+")) for line in first["diff"][2:])
    assert json.loads(capsys.readouterr().out)["divergent"] == [5]  # the one JSON line says so too
