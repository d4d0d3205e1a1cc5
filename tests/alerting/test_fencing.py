"""The lock fence: a server acts only on a recent verification of its store lock, else verifies first."""

from __future__ import annotations

import pytest

from alerting.fencing import HELD, LockFence, LockState, LockStatus, NotActive

LOST = LockStatus(LockState.LOST, "store s is in use by another gpuwarden serve (pid 9 on b)")
DOWN = LockStatus(LockState.UNREACHABLE, "connection refused")


class FakeLock:
    """A lock whose verification says what the test sets, counting how often it was asked."""

    def __init__(self) -> None:
        self.says = HELD
        self.asked = 0

    def verify(self) -> LockStatus:
        self.asked += 1
        return self.says


class Monotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _fence(lock: FakeLock, clock: Monotonic, lost: list[LockStatus] | None = None) -> LockFence:
    return LockFence(lock.verify, bound_seconds=2.0, monotonic=clock, on_lost=(lost or []).append)


def test_a_recent_verification_is_trusted_without_asking_the_lock_again() -> None:
    lock, clock = FakeLock(), Monotonic()
    fence = _fence(lock, clock)
    clock.now += 1.9
    fence.require()
    assert lock.asked == 0


def test_a_process_resumed_after_a_pause_verifies_before_acting_and_refuses_a_lost_lock() -> None:
    lock, clock, lost = FakeLock(), Monotonic(), []
    fence = LockFence(lock.verify, monotonic=clock, on_lost=lost.append)
    lock.says = LOST  # a standby took the lock while this process was stopped
    clock.now += 30  # SIGSTOP for 30 s: monotonic time ran on
    with pytest.raises(NotActive, match=r"lost the store lock .*pid 9 on b"):
        fence.require()
    assert lock.asked == 1
    assert lost == [LOST]
    assert fence.lost


def test_a_loss_is_final_even_if_the_lock_is_free_again_later() -> None:
    lock, clock = FakeLock(), Monotonic()
    fence = _fence(lock, clock)
    fence.record(LOST)
    lock.says = HELD
    clock.now += 10
    with pytest.raises(NotActive):
        fence.require()
    assert lock.asked == 0


def test_an_unreachable_store_allows_journaling_but_no_notification() -> None:
    lock, clock = FakeLock(), Monotonic()
    fence = _fence(lock, clock)
    lock.says = DOWN
    clock.now += 5
    fence.require(unreachable_ok=True)
    with pytest.raises(NotActive, match=r"cannot verify .*connection refused"):
        fence.require()
    assert lock.asked == 1  # the second answer came from the first verification, still recent


def test_a_verification_that_raises_is_not_taken_as_held() -> None:
    clock = Monotonic()

    def broken() -> LockStatus:
        raise RuntimeError("lock connection in a bad state")

    fence = LockFence(broken, monotonic=clock)
    clock.now += 5
    with pytest.raises(NotActive, match="bad state"):
        fence.require()


def test_the_lock_watch_keeps_the_fence_fresh() -> None:
    lock, clock = FakeLock(), Monotonic()
    fence = _fence(lock, clock)
    for _ in range(5):
        clock.now += 1.0
        fence.record(HELD)  # what serve's once-a-second check found
        fence.require()
    assert lock.asked == 0
