"""``anomaly_restart_fuzz.py``'s harness itself: what its source serves with ``--hard-faults
--blank-samples``, its mid-tick restarts (``--mid-tick``), its failed warm-up reads (``--failed-warm-ups``)
and its comparison of alert content."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from tests.benchmarks.harness import harness_module

EVERY = 300.0
T0 = 1_767_225_600.0


@pytest.fixture
def fuzz(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return harness_module(monkeypatch, "anomaly_restart_fuzz")


def test_a_blank_temperature_leaves_its_gpu_up(fuzz):
    """A NaN or +Inf temperature is a sample of a GPU that reports: ``gpuwarden_gpu_up`` stays 1 there. The
    blanks were set in the temperature cube before the hard faults read presence from it, so the GPU
    vanished from ``gpu_up`` too: the signatures detector saw a GPU lost that the fleet never lost."""
    fleet = fuzz.Fleet(3, 8, 2, [], t0=T0, hard=[])
    fleet.blanks = [fuzz.Fault("nan", 1, 1, 2), fuzz.Fault("inf", 2, 1, 3)]
    frames = fuzz.FleetSource(fleet).frames_at(T0 + EVERY * np.arange(4))
    up = next(f for f in frames if f.query == fuzz.GPU_UP)
    assert up.values.tolist() == np.ones((8, 4)).tolist()
    temperature = frames[0]
    assert np.isnan(temperature.values[1, 1]) and np.isinf(temperature.values[2, 1:3]).all()


@pytest.fixture
def content(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return harness_module(monkeypatch, "alert_content")


@pytest.fixture
def timing(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return harness_module(monkeypatch, "restart_timing")


def test_alerts_held_under_one_fingerprint_that_say_otherwise_diverge(content):
    """The fingerprint hashes the labels only: an alert recommending another action, or scored otherwise,
    is the same fingerprint; the comparison tells it, and lets a score's last bits pass."""
    base = content.AlertContent((("alertname", "GpuAnomaly"), ("gpu", "1")), "investigate", 3.0)
    assert content.firing_divergence(4, {"a": base}, {"a": base._replace(score=3.0 + 1e-13)}) is None
    other = {"a": base._replace(action="drain_node"), "b": base}
    found = content.firing_divergence(4, {"a": base}, other)
    assert found == {
        "step": 4,
        "only_straight": [],
        "only_restarted": ["b"],
        "changed": [("a", base, other["a"])],
    }
    assert not content.same_content(base, base._replace(score=3.1))
    assert content.same_content(base._replace(score=float("nan")), base._replace(score=float("nan")))


@pytest.mark.parametrize("seed", range(8))
def test_mid_tick_restarts_keep_every_read_phase_off_the_grid_and_under_absent_after(timing, seed):
    restarts = {3: (2, 0), 4: (0, 0), 9: (0, 2), 15: (1, 0)}  # 4 lies within 3's downtime: not taken
    assert timing.taken(restarts) == [3, 9, 15]
    t = timing.draw_timing(seed, restarts)
    read = t.phase
    for at in timing.taken(restarts, t):
        assert t.before[at] == read and timing.PHASES[0] <= read <= timing.PHASES[1]
        read = (read + t.starts[at] + t.again.get(at, 0.0)) % EVERY
    assert timing.PHASES[0] <= read <= timing.PHASES[1]


def test_a_restart_that_reads_past_a_sample_first_scores_the_tick_after_it(timing):
    """A start 250 s into a tick whose reads ended 60 s past the grid reads the next sample in its warm-up:
    its first tick is the straight run's next but one."""
    t = timing.Timing(latency=30.0, phase=60.0, starts={5: 250.0}, before={5: 60.0})
    assert t.first_live(5, 2) == 8
    assert t.step(T0, T0 + 30.0 + 60.0 + 8 * EVERY) == 7
    assert timing.Timing().first_live(5, 2) == 7


def test_a_failed_warm_up_spans_the_restart_and_never_follows_a_crash_that_lost_ticks(timing):
    restarts = {4: (2, 0), 12: (1, 3), 20: (0, 0)}
    for seed in range(20):
        warm, straight = timing.failed_warm_ups(seed, restarts, 6, timing.Timing())
        assert 12 not in warm
        assert straight == [(warm[at], at, at + restarts[at][0]) for at in sorted(warm)]


def test_no_failed_warm_up_where_a_later_crash_takes_up_a_save_from_before_it(timing):
    """A crash at 6 losing 4 saves takes up the one from before the restart at 2 (its process saved after
    ticks 4 and 5 only): its warm-up reads the ticks the straight run read failing (2, 3) whole again, which
    the straight run fed late, at its catch-up. The restart's loss, not the service's: seeds 10 and 13 of
    ``--promql --mid-tick --failed-warm-ups`` diverged by it (fleet, thermal)."""
    for seed in range(40):
        warm, _ = timing.failed_warm_ups(seed, {2: (2, 0), 6: (2, 4), 14: (0, 0)}, 6, timing.Timing())
        assert 2 not in warm
    drawn = [
        timing.failed_warm_ups(seed, {2: (2, 0), 6: (2, 1)}, 6, timing.Timing())[0] for seed in range(40)
    ]
    assert any(2 in warm for warm in drawn)  # a crash losing less than the process saved keeps its saves


def test_a_source_failing_a_query_reads_it_on_from_where_resume_says(fuzz):
    """``FleetSource`` as ``PromQLSource``: a query failing is left out, and after ``resume`` read from the
    position given."""
    fleet = fuzz.Fleet(3, 8, 2, [], t0=T0, warm_failed={2: 0})
    source = fuzz.FleetSource(fleet)
    temp = fuzz.QUERIES[0]
    source.failing = frozenset({temp})
    assert temp not in {f.query for f in source.read(T0, T0 + 4 * EVERY)}
    source.resume({temp: T0 + EVERY}, T0)
    source.failing = frozenset()
    frames = {f.query: f for f in source.read(T0 + 4 * EVERY, T0 + 5 * EVERY)}
    assert frames[temp].timestamps.tolist() == (T0 + EVERY * np.arange(2, 6)).tolist()
    assert frames[fuzz.QUERIES[1]].timestamps.tolist() == [T0 + 5 * EVERY]


def test_a_mid_tick_restart_started_again_at_once_scores_as_the_straight_run(fuzz, tmp_path):
    """Seed 3 with ``--mid-tick``: its reads 67 s past the grid, restarted 261 s into a tick (its warm-up
    reads a sample more than the tick before, replayed as a tick ending 39 s after its read), then stopped
    14 s later and started at once. Before ``ServiceCore.read_until`` that save recorded the replayed tick's
    end, after the next start's now: refused as from the future, the hour replayed without what the
    detectors had learnt (seen failing with c85a7e29 reverted). Whole-tick restarts could not reach it."""
    fleet, restarts = fuzz.draw(3, 20, mid_tick=True)
    assert (fleet.timing.before[8], fleet.timing.starts[8], fleet.timing.again[8]) == (67.0, 261.0, 14.0)
    straight = fuzz.run(fleet, 20, {}, True, tmp_path / "s.npz")
    restarted = fuzz.run(fleet, 20, restarts, True, tmp_path / "s.npz")
    assert fuzz.first_divergence(straight, restarted) == (None, None)


def test_a_source_read_behind_the_clock_is_stamped_when_read_not_stale(fuzz, timing):
    """``FleetSource`` stamps a good read at the clock's time, as ``PromQLSource`` and ``InProcessSource`` do.
    It stamped the read's end, which ``--mid-tick``'s latency (240 s) put past ``stale_after_seconds``: the
    whole run held ``GpuwardenSourceStale`` while every read succeeded, and a restart re-raised it aged from
    its own warm-up (seeds 222, 254 and 257 of 200-259 diverged in firing alerts)."""
    fleet = fuzz.Fleet(3, 8, 2, [], t0=T0, timing=timing.Timing(latency=240.0, phase=69.0))
    clock = fuzz.FakeClock(fleet.timing.first_clock(T0))
    service = fuzz.AnomalyService(fuzz.config(latency=240.0), [fuzz.FleetSource(fleet)], clock)
    service.warm_up()
    for _ in range(3):
        clock.advance(EVERY)
        service.infer()
    assert not [a for a in service.firing.values() if a.alert.labels["alertname"] == "GpuwardenSourceStale"]


@pytest.mark.parametrize(("seed", "mid_tick"), [(275, False), (284, True)])
def test_failed_reads_around_restarts_score_as_the_straight_run(fuzz, tmp_path, seed, mid_tick):
    """Seeds 275 and 284 of ``--failed-reads --hard-faults --blank-samples`` (the draws above): each diverged
    in scores (fleet, thermal) when the failure fell at a tick the restarted run lost or never ran."""
    fleet, restarts = fuzz.draw(seed, 40, True, True, True, mid_tick=mid_tick)
    straight = fuzz.run(fleet, 40, {}, False, tmp_path / "s.npz")
    restarted = fuzz.run(fleet, 40, restarts, True, tmp_path / "s.npz")
    assert fuzz.first_divergence(straight, restarted) == (None, None)


def test_a_restart_drawn_before_a_mid_tick_restarts_first_tick_is_not_taken(fuzz, timing, tmp_path):
    """Seed 228 (40 steps, ``--failed-reads --mid-tick``): the process started before tick 21 (down 3) scores
    first at tick 26, so the restart drawn before tick 25 is never made. ``draw_timing`` took it (whole-tick
    downtimes only) and moved the read phase on by its start: the live reads after the restart at 30 ended
    278 s past the grid, every GPU older than ``absent_after_seconds``, and the node truly down got no
    ``NodeDown`` (the presence detector reads a mass absence as the source's)."""
    fleet, restarts = fuzz.draw(228, 40, False, False, True, mid_tick=True)
    t = fleet.timing
    assert 25 in restarts and t.first_live(21, restarts[21][0]) == 26
    assert timing.taken(restarts, t) == [21, 28, 30] == sorted(t.before)
    read = t.phase
    for at in timing.taken(restarts, t):
        assert t.before[at] == read
        read = (read + t.starts[at] + t.again.get(at, 0.0)) % EVERY
        assert timing.PHASES[0] <= read <= timing.PHASES[1]
    straight = fuzz.run(fleet, 40, {}, False, tmp_path / "s.npz")
    restarted = fuzz.run(fleet, 40, restarts, True, tmp_path / "s.npz")
    assert fuzz.first_divergence(straight, restarted) == (None, None)
