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


def test_a_failed_read_falls_at_the_tick_whose_save_its_restart_takes_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--failed-reads`` fails a query at the tick whose save a restart takes up, so both runs read it
    failing and catch it up alike. Seed 275 (40 steps): the crash before tick 38 loses 4 saves, one per tick
    run; the restart before tick 35 ran none at 35, so the save it takes up is tick 32's, not 33's (drawn at
    38 - 1 - 4 = 33 before: a failure the crash lost, read whole by the restart, the runs diverging at tick
    39). The failure at tick 34, before the restart at 35, is one that crash loses: none there."""
    restart_fleet = harness_module(monkeypatch, "restart_fleet")
    fleet, restarts = restart_fleet.draw(275, 40, True, True, True)
    assert restarts == {4: (2, 0), 35: (1, 0), 38: (1, 4)}
    assert [f.start for f in fleet.failed] == [3, 32]


def test_a_failed_read_falls_at_no_tick_a_mid_tick_restart_did_not_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Seed 284 with ``--mid-tick``: the process started before tick 20 (down 1) starts 278 s into its
    tick and again 269 s later, its first tick 23 (``Timing.first_live``), so the restart drawn before tick
    22 is never run and the straight run's failure at tick 21 was no restart's to catch up (drawn before,
    the runs diverging at tick 23)."""
    restart_fleet = harness_module(monkeypatch, "restart_fleet")
    fleet, restarts = restart_fleet.draw(284, 40, True, True, True, mid_tick=True)
    assert restarts == {20: (1, 0), 22: (2, 0), 34: (2, 0)} and fleet.timing.first_live(20, 1) == 23
    assert [f.start for f in fleet.failed] == [19, 33]


def test_a_failed_read_falls_at_no_tick_an_earlier_restarts_crash_reads_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Seed 469 (30 steps): the restart before tick 22 loses 3 saves and takes up tick 13's, but the one
    before tick 19, losing 3 too, took up tick 12's and read tick 13 again whole from Prometheus: a failure
    there is one the straight run saw and that restart could not (drawn before, the runs diverging at 21)."""
    restart_fleet = harness_module(monkeypatch, "restart_fleet")
    fleet, restarts = restart_fleet.draw(469, 30, False, False, True)
    assert restarts == {14: (3, 0), 19: (2, 3), 22: (0, 3)}
    assert [f.start for f in fleet.failed] == [12]


def test_a_failed_read_falls_at_no_tick_a_process_scores_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 1346 (60 steps): restarts before ticks 40 (down 0) and 41, the temperature drawn failing at 39 and
    40, the ticks whose saves they take up. The process started before 40 read it whole in its warm-up (live
    reads alone fail) and scored at 40 the sample that failed at 39, which the straight run, failing it at 40
    too, caught up at 41: the runs diverged at tick 40 in every detector reading it. None at 40 now."""
    restart_fleet = harness_module(monkeypatch, "restart_fleet")
    fleet, restarts = restart_fleet.draw(1346, 60, failed=True)
    assert restarts == {40: (0, 0), 41: (2, 0)} and fleet.timing.first_live(40, 0) == 40
    assert [f.start for f in fleet.failed] == [39]
