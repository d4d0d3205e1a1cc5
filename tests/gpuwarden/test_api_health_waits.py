"""Liveness while the journal applier waits for the engine that a tick holds (``alerting.engine_lock``).

12,000 alerts timing out together made ticks of 73 and 87 s, and the applier, waiting for the engine
meanwhile, did not beat its heartbeat: a tick longer than ``alerting.applier_stall_seconds`` made liveness
blame the applier, and Kubernetes would restart serve. The applier's heartbeat here runs on a clock only the
test moves; threads and events order the steps.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerting.applier import JournalApplier
from alerting.engine_lock import EngineLock
from alerting.health import Heartbeat
from alerting.journal import KIND_POSTABLE
from alerting.store_models import AlertRow
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert
from tests.gpuwarden.applier_serve import LABELS, applier_at, client_of, eventually


@pytest.fixture
def applier(tmp_path: Path) -> JournalApplier:
    return applier_at(tmp_path)


def _tick_clock_and_waiting(
    applier: JournalApplier, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[float], threading.Event]:
    """Give the applier a heartbeat of 3 s on a clock only the test moves (returned), and an event set once
    the applier waits for the engine (``Heartbeat.waiting_for``)."""
    seconds = [0.0]
    applier.heartbeat = Heartbeat(
        "the journal applier", 3.0, "alerting.applier_stall_seconds", lambda: seconds[0]
    )
    waiting = threading.Event()
    wait_for = applier.heartbeat.waiting_for

    @contextmanager
    def told(lock: EngineLock) -> Iterator[None]:
        with wait_for(lock):
            waiting.set()
            yield

    monkeypatch.setattr(applier.heartbeat, "waiting_for", told)
    return seconds, waiting


def _post_behind(applier: JournalApplier, node: str) -> None:
    """Journal one alert for the applier to apply (it waits for the engine a tick holds)."""
    body = json.dumps([{"labels": {**LABELS, "node": node}}]).encode()
    applier.journal.append(KIND_POSTABLE, body, 1, accepted_at=applier.engine.clock.time())
    applier.notify()


def test_liveness_stays_ok_while_the_applier_waits_behind_a_tick_that_works_longer_than_its_deadline(
    applier: JournalApplier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """12,000 alerts timing out together made ticks of 73 and 87 s, and the applier waiting for the engine
    meanwhile did not beat: a tick longer than ``alerting.applier_stall_seconds`` made liveness blame the
    applier, and Kubernetes would restart serve. The tick's progress beats the applier waiting behind it."""
    engine = applier.engine
    seconds, waiting = _tick_clock_and_waiting(applier, monkeypatch)
    ends = engine.clock.now() + timedelta(seconds=30)
    engine.ingest([Alert({**LABELS, "node": f"r03-n{k:02d}"}, ends_at=ends) for k in range(10)])
    clock = engine.clock
    assert isinstance(clock, FakeClock)
    clock.advance(60)  # all ten timed out: the tick resolves them, one transaction
    started, seen = threading.Event(), []
    one = engine._ingest_one

    def each_takes_a_second(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is tick:
            if not started.is_set():
                started.set()
                assert waiting.wait(10)  # the applier waits for the engine from now on
            seconds[0] += 1.0
            seen.append(applier.heartbeat.problem())
        return one(*args, **kwargs)

    monkeypatch.setattr(engine, "_ingest_one", each_takes_a_second)
    tick = threading.Thread(target=engine.tick, daemon=True)
    with client_of(applier) as client:
        eventually(lambda: applier.heartbeat.beats > 0)  # idle, beating
        tick.start()
        assert started.wait(10)  # the tick holds the engine
        _post_behind(applier, "r04-n00")
        tick.join(30)
        assert not tick.is_alive()
        eventually(lambda: applier.lag_bytes == 0)
        assert seconds[0] == 10.0 > applier.heartbeat.deadline_seconds
        assert seen == [None] * 10
        assert client.get("/-/healthy").status_code == 200
    with Session(engine.store.engine) as session:  # the ten the tick resolved, the one applied behind it
        assert sorted(session.scalars(select(AlertRow.status))) == ["firing"] + ["resolved"] * 10


def test_liveness_fails_naming_the_tick_when_the_applier_waits_behind_one_that_makes_no_progress(
    applier: JournalApplier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The applier waiting for the engine is alive only as long as what holds it works: a tick that is
    stuck itself (a PostgreSQL row lock nothing bounds) leaves it unbeaten, and a restart is what helps."""
    engine = applier.engine
    seconds, waiting = _tick_clock_and_waiting(applier, monkeypatch)
    stuck, go = threading.Event(), threading.Event()
    release = engine._release_unmuted

    def stuck_in_the_tick(*args: Any, **kwargs: Any) -> Any:
        stuck.set()
        assert go.wait(30)
        return release(*args, **kwargs)

    monkeypatch.setattr(engine, "_release_unmuted", stuck_in_the_tick)
    tick = threading.Thread(target=engine.tick, daemon=True)
    with client_of(applier) as client:
        eventually(lambda: applier.heartbeat.beats > 0)  # idle, beating
        tick.start()
        try:
            assert stuck.wait(10)
            _post_behind(applier, "r04-n00")
            assert waiting.wait(10)
            seconds[0] += 4.0
            answer = client.get("/-/healthy")
            assert answer.status_code == 503
            assert "it is stuck waiting for the engine, held by an engine tick" in answer.text, answer.text
        finally:
            go.set()
            tick.join(30)
        eventually(lambda: applier.lag_bytes == 0)
        assert client.get("/-/healthy").status_code == 200  # it beat as it took the engine and applied
