import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gpuwarden.clock import AcceleratedClock, FakeClock, SystemClock, rfc3339


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


@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 1, 1, 12, 7, tzinfo=UTC),
        datetime(2026, 1, 1, 14, 7, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 1, 1, 7, 7, tzinfo=timezone(timedelta(hours=-5))),
    ],
    ids=["utc", "east", "west"],
)
def test_rfc3339_writes_any_aware_time_in_utc_with_a_z(at: datetime) -> None:
    # The forwarder and the webhook converted before calling it, each in its own copy; one in another zone
    # came out with its offset (+02:00) where the API writes Z.
    assert rfc3339(at) == "2026-01-01T12:07:00Z"
