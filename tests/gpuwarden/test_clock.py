import time

import pytest

from gpuwarden.clock import AcceleratedClock, FakeClock, SystemClock


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(start=100.0)
    assert clock.time() == 100.0
    clock.sleep(5)
    assert clock.time() == 105.0
    clock.advance(0.5)
    assert clock.monotonic() == 105.5
    assert clock.now().timestamp() == 105.5


def test_fake_clock_refuses_to_go_backwards() -> None:
    with pytest.raises(ValueError, match="backwards"):
        FakeClock().advance(-1)


def test_accelerated_clock_runs_faster_than_real_time() -> None:
    clock = AcceleratedClock(factor=1000.0, start=0.0)
    real_start = time.monotonic()
    clock.sleep(20.0)  # 20 simulated seconds = 20 ms real
    assert time.monotonic() - real_start < 5.0
    assert clock.time() >= 20.0


def test_system_clock_now_is_utc() -> None:
    now = SystemClock().now()
    assert now.tzinfo is not None
    assert now.utcoffset() is not None
    assert now.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
