"""The restart fuzzes' shared draw (``benchmarks/restart_fleet.py``)."""

from __future__ import annotations

import pytest

from tests.benchmarks.harness import harness_module


@pytest.mark.parametrize("steps", [1, 3, 4, 5])
def test_a_short_run_draws_the_restarts_it_has_room_for_instead_of_failing(
    monkeypatch: pytest.MonkeyPatch, steps: int
) -> None:
    # `snapshot_race.py --steps 5` stopped on "Sample larger than population" from the draw.
    restart_fleet = harness_module(monkeypatch, "restart_fleet")
    for seed in range(20):
        _, restarts = restart_fleet.draw(seed, steps)
        assert all(2 <= at <= steps - 2 for at in restarts), (seed, restarts)
