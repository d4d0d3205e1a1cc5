"""The crash fuzz's kills from another thread (a Slack or webhook call armed for one): landed before told."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from tests.benchmarks.harness import harness_module


@pytest.fixture
def fuzz(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``benchmarks/crash_fuzz.py``, imported as it runs (its folder on the path)."""
    return harness_module(monkeypatch, "crash_fuzz")


@pytest.fixture
def serving(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``benchmarks/crash_serve.py``: one serve of a run, and waiting on it."""
    return harness_module(monkeypatch, "crash_serve")


def test_an_armed_kill_has_landed_before_its_waiter_is_told_and_lands_once(fuzz: ModuleType) -> None:
    # Told first, the run went on with serve still running (the last step's settle, seed 93 with
    # `--steps 20 --kills 3`), and the kill landing under that request stopped the whole fuzz with
    # `httpx.ReadError: [Errno 104] Connection reset by peer`.
    landed: list[tuple[str, bool]] = []
    serve = SimpleNamespace(recorder=SimpleNamespace(on_call=None))
    serve.kill = lambda how: landed.append((how, fired.is_set()))
    fired = fuzz._arm(serve, lambda _call: True, "hold-send")
    serve.recorder.on_call(object())
    serve.recorder.on_call(object())  # the next wanted call: killed already
    assert landed == [("hold-send", False)]
    assert fired.is_set()


def test_a_kill_is_counted_before_its_signal_so_a_request_it_breaks_is_its_own(serving: ModuleType) -> None:
    # A step's request broken by a kill from the recorder's thread asks `gone()`, which took a serve not yet
    # marked killed for one that exited by itself.
    at_signal: list[tuple[bool, list[str]]] = []
    serve = serving.Serve(Path("unused"), None, "unused.db")
    alive = SimpleNamespace(poll=lambda: None, wait=lambda: -9)
    alive.send_signal = lambda _signal: at_signal.append((serve.killed, list(serve.kills)))
    serve.proc = alive
    try:
        serve.kill("hold-early")
    finally:
        serve.http.close()
    assert at_signal == [(True, ["hold-early"])]
