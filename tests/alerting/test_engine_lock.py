"""The engine's lock beats a loop waiting for it as its holder makes progress (``alerting.engine_lock``).

The journal applier waits for the lock while a tick holds it; a tick longer than the liveness deadline made
the applier's heartbeat look stuck. Here a "tick" thread holds the lock and a "loop" thread waits for it,
each step told by an event; the heartbeat's clock moves only when the test moves it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from alerting.engine_lock import ANOTHER, EngineLock
from alerting.health import Heartbeat
from tests.alerting.test_retention import _SlowToWake  # a blocked taker that wakes late

DEADLINE = 300.0


class Clock:
    """The heartbeat's seconds, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _heartbeat(clock: Clock) -> Heartbeat:
    beat = Heartbeat("the journal applier", DEADLINE, "alerting.applier_stall_seconds", clock)
    beat.beat()  # the loop ran, then went to apply
    return beat


@contextmanager
def _thread(run: Callable[[], None]) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        thread.join(10)
        assert not thread.is_alive()


@contextmanager
def _waiting(lock: EngineLock, heartbeat: Heartbeat) -> Iterator[threading.Event]:
    """A loop waiting for ``lock`` under ``heartbeat.waiting_for``, as the applier does; the event is set
    once it holds the lock."""
    registered, acquired = threading.Event(), threading.Event()

    def wait() -> None:
        with heartbeat.waiting_for(lock):
            registered.set()
            with lock:
                acquired.set()

    with _thread(wait):
        assert registered.wait(10)
        yield acquired


def test_a_loop_waiting_behind_a_holder_that_works_stays_alive_however_long_it_holds_the_lock() -> None:
    clock, lock = Clock(), EngineLock()
    heartbeat = _heartbeat(clock)
    steps = threading.Event()
    stepped = threading.Event()
    release = threading.Event()
    holding = threading.Event()

    def tick() -> None:
        with lock.held_by("an engine tick"):
            holding.set()
            for _ in range(10):
                assert steps.wait(10)
                steps.clear()
                lock.progress()  # an alert or incident worked through
                stepped.set()
            assert release.wait(10)

    with _thread(tick):
        assert holding.wait(10)
        with _waiting(lock, heartbeat) as acquired:
            seen = []
            for _ in range(10):
                clock.now += 100.0  # a third of the deadline between two steps of the tick
                stepped.clear()
                steps.set()
                assert stepped.wait(10)
                seen.append(heartbeat.problem())
            assert clock.now == 1000.0 > DEADLINE
            assert seen == [None] * 10
            assert heartbeat.age() == 0.0  # beaten at the tick's last step
            release.set()
            assert acquired.wait(10)


def test_a_loop_waiting_behind_a_holder_that_makes_no_progress_is_stuck_and_named_behind_it() -> None:
    clock, lock = Clock(), EngineLock()
    heartbeat = _heartbeat(clock)
    release, holding = threading.Event(), threading.Event()

    def tick() -> None:
        with lock.held_by("an engine tick"):
            holding.set()
            assert release.wait(10)  # a PostgreSQL row lock that never comes

    with _thread(tick):
        assert holding.wait(10)
        with _waiting(lock, heartbeat) as acquired:
            clock.now += DEADLINE
            assert heartbeat.problem() is None
            clock.now += 12.0
            assert heartbeat.problem() == (
                "the journal applier has not made progress for 312.0 s (the deadline,"
                " alerting.applier_stall_seconds, is 300 s): it is stuck waiting for the engine, held by an"
                " engine tick that shows no progress either"
            )
            release.set()
            assert acquired.wait(10)
    assert heartbeat.problem() is not None  # nothing beat it since: the applier's own progress does


def test_an_unnamed_holder_is_another_engine_operation_and_taking_the_lock_is_progress() -> None:
    clock, lock = Clock(), EngineLock()
    heartbeat = _heartbeat(clock)
    first_holding, first_release = threading.Event(), threading.Event()
    second_holding, second_release = threading.Event(), threading.Event()

    def first() -> None:
        with lock:  # an API action, say: it names nothing
            first_holding.set()
            assert first_release.wait(10)

    def second() -> None:
        assert first_holding.wait(10)
        with lock:  # taken once the first let go
            second_holding.set()
            assert second_release.wait(10)

    # This thread waits for the lock (it never takes it here).
    with heartbeat.waiting_for(lock), _thread(first), _thread(second):
        assert first_holding.wait(10)
        clock.now += DEADLINE + 1
        assert f"held by {ANOTHER} that shows no progress" in (heartbeat.problem() or "")
        first_release.set()
        assert second_holding.wait(10)
        assert heartbeat.problem() is None  # beaten when the second took it
        assert heartbeat.age() == 0.0
        second_release.set()


def test_only_the_holders_progress_beats_and_never_the_waiters_own() -> None:
    clock, lock = Clock(), EngineLock()
    heartbeat = _heartbeat(clock)
    clock.now += DEADLINE + 1
    lock.progress()  # nobody holds it: nothing happens
    with heartbeat.waiting_for(lock):
        lock.progress()  # not held by this thread either
        assert heartbeat.problem() is not None
        with lock:  # the waiter itself holds it now: its progress is its own heartbeat's business
            lock.progress()
            assert lock.held_against(threading.get_ident()) is None
        assert heartbeat.problem() is not None
    beats = heartbeat.beats
    holding, release = threading.Event(), threading.Event()

    def other() -> None:
        with lock.held_by("an engine tick"):
            holding.set()
            lock.progress()
            assert release.wait(10)

    with _thread(other):
        assert holding.wait(10)
        assert heartbeat.beats == beats  # no longer waiting: not beaten
        assert lock.held_against(threading.get_ident()) == "an engine tick"
        release.set()


def test_a_hold_taken_again_inside_keeps_its_name_and_ends_with_the_outermost() -> None:
    lock = EngineLock()
    holding, release, done = threading.Event(), threading.Event(), threading.Event()
    inner_seen: list[str | None] = []

    def tick() -> None:
        with lock.held_by("an engine tick"):
            with lock.held_by("an ingest"), lock:  # the tick's own ingest of the alerts timing out
                inner_seen.append(lock.held_against(-1))
            holding.set()
            assert release.wait(10)
        done.set()

    with _thread(tick):
        assert holding.wait(10)
        assert inner_seen == ["an engine tick"]
        assert lock.held_against(threading.get_ident()) == "an engine tick"
        release.set()
        assert done.wait(10)
    assert lock.held_against(threading.get_ident()) is None


def test_a_thread_waiting_for_the_lock_takes_it_before_a_loop_that_lets_it_in_takes_it_back() -> None:
    # Retention prunes in slices, each under the lock, and lets a waiting ingest in between: the lock is not
    # fair, and an alert posted during a first prune waited for most of its slices rather than one.
    lock = EngineLock()
    lock._lock = _SlowToWake()  # type: ignore[assignment]
    order: list[str] = []
    first_slice, ingest_queued = threading.Event(), threading.Event()

    def ingest() -> None:
        assert first_slice.wait(10)
        with lock:
            order.append("ingest")

    def prune() -> None:
        for n in (1, 2, 3):
            with lock:
                order.append(f"slice {n}")
                if n == 1:
                    first_slice.set()
                    assert ingest_queued.wait(10)
            lock.let_in(timeout=60.0)  # bounded for a waiter that never comes; this one does

    with _thread(ingest), _thread(prune):
        assert first_slice.wait(10)
        for _ in range(10_000):  # until the ingest thread blocks, taking the lock the first slice holds
            if lock._queued:
                break
            time.sleep(0.001)
        assert lock._queued
        ingest_queued.set()
    assert order == ["slice 1", "ingest", "slice 2", "slice 3"]
