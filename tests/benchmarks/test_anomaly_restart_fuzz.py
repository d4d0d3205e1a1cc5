"""``anomaly_restart_fuzz.py --promql``: its Prometheus stand-in answers as Prometheus would, and the fuzz
runs on it through ``PromQLSource``."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import httpx
import numpy as np
import pytest

from anomaly.promql import PromQuery
from gpuwarden.clock import FakeClock
from tests.benchmarks.harness import harness_module, run_harness, run_script

EVERY = 300.0


@pytest.fixture
def fuzz(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return harness_module(monkeypatch, "anomaly_restart_fuzz")


@pytest.fixture
def served(fuzz: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, object, object]]:
    """A two-node fleet (the second down for ticks 2-3) served with the temperature and the range query
    (guarded, as ``PromQLSource`` sends it); node 0 scraped 40 s past each minute, node 1 on it."""
    prom_module = harness_module(monkeypatch, "fleet_prometheus")
    fleet = fuzz.Fleet(7, 8, 2, [fuzz.Fault("down", 1, 2, 4)], t0=1_767_225_600.0)
    prom = prom_module.FleetPrometheus()
    queries = [PromQuery(fuzz.QUERIES[0], fuzz.QUERIES[0], EVERY), prom_module.RANGE_QUERY]
    prom.serve(queries, fuzz.FleetSource(fleet).frames_at, [40.0, 0.0])
    yield prom_module, prom, fleet
    prom.close()


def _hosts(frame: object) -> list[str]:
    return sorted({labels["Hostname"] for labels in frame.labels})  # type: ignore[attr-defined]


def test_a_step_reads_each_nodes_last_scrape_and_a_down_nodes_series_end_at_its_first_failed_one(served):
    _, prom, fleet = served
    source = prom.source(FakeClock(fleet.t0))
    try:
        query = source.queries[0]
        temp = source.query_range(query, fleet.t0, fleet.t0 + 6 * EVERY)  # steps of ticks 1..6
        present = {"n0": [], "n1": []}
        for row, labels in enumerate(temp.labels):
            present[labels["Hostname"]].append((~np.isnan(temp.values[row])).tolist())
        # Node 1's scrape on a step is read there: its series end at its first failed scrape (a staleness
        # marker, not 5 minutes of its last value) and come back with its first good one.
        assert present["n1"][0] == [True, False, False, True, True, True]
        assert present["n0"][0] == [True] * 6  # never down
        assert temp.labels[0]["__name__"] == query.name
        # Node 0's sample at a step is its scrape 20 s before it (within the lookback).
        assert temp.values[0, 2] == fleet.values(fleet.t0 + 3 * EVERY - 20)[0, 0]
        assert temp.values[4, 0] == fleet.values(fleet.t0 + EVERY)[0, 4]
    finally:
        source.close()


def test_the_range_query_reads_the_five_minute_window_guarded_by_the_current_sample(served):
    prom_module, prom, fleet = served
    source = prom.source(FakeClock(fleet.t0))
    try:
        query = next(q for q in source.queries if q.name == prom_module.RANGE_QUERY.name)
        assert query.sent[1], "sent guarded: only where gpu_up answers at the step"
        frame = source.query_range(query, fleet.t0, fleet.t0 + 6 * EVERY)
        assert "__name__" not in frame.labels[0] and set(frame.values[~np.isnan(frame.values)]) == {1}
        n1 = [row for row, labels in enumerate(frame.labels) if labels["Hostname"] == "n1"]
        assert (~np.isnan(frame.values[n1[0]])).tolist() == [True, False, False, True, True, True]
        # Unguarded, the window [t - 5m, t] of the step at tick 2 still holds node 1's scrape of tick 1.
        unguarded = [prom._min_up(fleet.t0 + k * EVERY, False) for k in range(1, 7)]
        assert [any(lab["Hostname"] == "n1" for lab, _ in at) for at in unguarded] == [
            True,
            True,
            False,
            True,
            True,
            True,
        ]
    finally:
        source.close()


def test_a_failed_read_is_an_http_503_of_that_query_only(served):
    _, prom, fleet = served
    source = prom.source(FakeClock(fleet.t0 + 2 * EVERY))
    try:
        prom.fail([source.queries[0].name])
        frames = source.read(fleet.t0 + EVERY, fleet.t0 + 2 * EVERY)
        health = source.health().queries
        assert [f.query for f in frames] == [source.queries[1].name]
        assert "HTTP 503" in (health[source.queries[0].name].last_error or "")
        prom.fail([])
        assert {f.query for f in source.read(fleet.t0 + EVERY, fleet.t0 + 2 * EVERY)} == {
            q.name for q in source.queries
        }
    finally:
        source.close()


def test_a_few_seeds_read_through_promql_restart_alike() -> None:
    result = run_harness(
        "anomaly_restart_fuzz.py", "--seeds", "1-2", "--steps", "12", "--snapshot", "--promql", timeout=300
    )
    assert result["promql"] and (result["divergent"], result["firing_divergent"]) == (0, 0)


def test_restarts_while_prometheus_was_down_since_the_first_start_score_as_the_straight_run() -> None:
    # Seed 2703's restarts before ticks 3 and 4 come while both runs' warm-ups are deferred (Prometheus down
    # through 1-20 ticks, 10 for it): read as of its own start, the restart learnt ticks 0-4 as history.
    args = ("--seeds", "2703-2704", "--steps", "14", "--snapshot", "--promql", "--down-at-start", "20")
    result = run_harness("anomaly_restart_fuzz.py", *args, timeout=300)
    assert result["restarted_deferred"] == 2
    assert (result["divergent"], result["firing_divergent"]) == (0, 0), result


def test_down_at_start_needs_the_prometheus_stand_in() -> None:
    done = run_script("anomaly_restart_fuzz.py", "--down-at-start", "3")
    assert (
        done.returncode == 2
        and "--down-at-start: the stand-in Prometheus' outage needs --promql" in done.stderr
    )


def test_a_restart_after_a_failed_tick_read_warms_up_from_prometheus_whole(fuzz, monkeypatch, tmp_path):
    """The 503 drawn for a tick's read of one query is that read's only: left set until the next tick, the
    restart's warm-up in between failed the query too and lost its history (44 of 60 seeds diverged with
    ``--hard-faults --failed-reads``, seed 26 at its first restart: the harness', not the service's)."""
    prom_module = harness_module(monkeypatch, "fleet_prometheus")
    fleet, restarts = fuzz.draw(26, 60, True, False, True)
    assert restarts[3] == (1, 0) and fleet.failed[0].start == 2  # failed at the tick before the restart
    prom = prom_module.FleetPrometheus()
    try:
        phases = prom_module.scrape_phases(26, fleet.nodes)
        prom.serve(fuzz.promql_queries(fleet), fuzz.FleetSource(fleet).frames_at, phases)
        straight = fuzz.run(fleet, 6, {}, False, tmp_path / "s.npz", prom)
        restarted = fuzz.run(fleet, 6, {3: (1, 0)}, True, tmp_path / "s.npz", prom)
    finally:
        prom.close()
    assert fuzz.first_divergence(straight, restarted) == (None, None)


@pytest.mark.parametrize("too_big", [(503, "timeout"), (422, "execution")], ids=["timeout", "max-samples"])
def test_a_read_of_more_steps_than_the_limit_is_refused_as_prometheus_refuses_one_too_big(served, too_big):
    prom_module, prom, fleet = served
    status, kind = too_big
    error = next(e for s, k, e in prom_module.TOO_BIG if (s, k) == too_big)
    faults = prom_module.PromFaults(max_points=3, too_big=(status, kind, error))
    prom.serve(prom.queries, prom._samples, prom._phases, faults)
    source = prom.source(FakeClock(fleet.t0))
    try:
        query = source.queries[0]
        assert source.query_range(query, fleet.t0, fleet.t0 + 3 * EVERY).timestamps.size == 3
        response = httpx.get(
            f"{prom.fake.url}/api/v1/query_range",
            params={
                "query": query.sent[0],
                "start": str(fleet.t0),
                "end": str(fleet.t0 + 3 * EVERY),
                "step": "300",
            },
        )
        assert (response.status_code, response.json()) == (
            status,
            {"status": "error", "errorType": kind, "error": error},
        )
    finally:
        source.close()


def test_prometheus_down_refuses_connections_at_the_reads_of_its_ticks_and_answers_after(served):
    prom_module, prom, fleet = served
    down = (fleet.t0 + 2 * EVERY, fleet.t0 + 4 * EVERY)  # the reads of ticks 2 and 3
    prom.serve(prom.queries, prom._samples, prom._phases, prom_module.PromFaults(down=down))
    clock = FakeClock(fleet.t0 + 3 * EVERY)
    source = prom.source(clock)
    try:
        assert source.read(fleet.t0 + 2 * EVERY, clock.time()) == []
        error = source.health().last_error or ""
        assert not source.health().up and "ConnectError" in error, error  # refused, not an HTTP answer
        clock.advance(2 * EVERY)
        assert {f.query for f in source.read(fleet.t0 + 4 * EVERY, clock.time())} == {
            q.name for q in source.queries
        }
    finally:
        source.close()


def test_a_coarse_query_answers_only_every_kth_step_of_the_grid(served):
    prom_module, prom, fleet = served
    name = prom.queries[0].name
    prom.serve(prom.queries, prom._samples, prom._phases, prom_module.PromFaults(coarse={name: 3}))
    stamps = [fleet.t0 + k * EVERY for k in range(1, 7)]
    answered = [bool(prom.fake.answers[prom.queries[0].sent[0]](t)) for t in stamps]
    assert answered == [round(t * 1000) % round(3 * EVERY * 1000) == 0 for t in stamps]
    assert answered.count(True) == 2


def test_an_outage_across_a_restart_starts_by_its_save_and_lasts_through_its_warm_up(fuzz, monkeypatch):
    """Else the restart reads ticks again that the uninterrupted run read in one catch-up (a harness
    artefact: seeds 2 and 25 diverged so, their saves older than the outage or their warm-ups after it)."""
    prom_module = harness_module(monkeypatch, "fleet_prometheus")
    crossing = 0
    for seed in range(60):
        fleet, restarts = fuzz.draw(seed, 60, True, False, True)
        faults = prom_module.draw_faults(seed, fleet.t0, EVERY, 60, restarts, fuzz.QUERIES)
        if faults.down is None:
            continue
        a, b = (round((t - fleet.t0) / EVERY) for t in faults.down)
        across = [s for s, (down, lost) in restarts.items() if a <= s - 1 - lost and s + down <= b]
        crossing += bool(across)
        near = [s for s, (down, lost) in restarts.items() if not (b < s - 2 - lost or a >= s + down + 2)]
        # Across one restart, clear of every other (seeds 48 and 58 here, 228 of 200-239 at 30 steps: another
        # restart's save older than the catch-up, or its warm-up finding Prometheus back); else clear of all.
        assert (len(across) == 1 and near == across) or not near, (seed, (a, b), restarts)
    assert crossing >= 10


def test_a_restart_whose_warm_up_read_fails_a_query_raises_its_pending_alerts_as_the_straight_run() -> None:
    # Seed 205: a thermal alert pending as the restart came, its power query failing through the warm-up,
    # was raised a tick later than by the uninterrupted run (`anomaly.alertupdate`'s `_unreadable`).
    result = run_harness(
        "anomaly_restart_fuzz.py",
        *("--seeds", "205", "--steps", "30", "--snapshot", "--promql", "--mid-tick", "--failed-warm-ups"),
        timeout=300,
    )
    assert (result["divergent"], result["firing_divergent"]) == (0, 0)


@pytest.mark.parametrize(
    "flags",
    [
        # Seed 310: a restart's warm-up read was the good read its staleness alert aged from, named "tick 15"
        # in the straight run and a bare time in the restarted one (the harness' comparison).
        ("--seeds", "310", "--failed-reads"),
        # Seed 317: the warm-up's replayed ticks resolved a staleness alert whose query failed again.
        ("--seeds", "317", "--failed-reads", "--failed-warm-ups"),
    ],
    ids=["warm-up-read-named-as-its-tick", "staleness-held-through-a-second-failure"],
)
def test_failed_reads_around_restarts_through_promql_leave_staleness_alerts_alike(flags) -> None:
    result = run_harness(
        "anomaly_restart_fuzz.py", *flags, "--steps", "30", "--snapshot", "--promql", timeout=300
    )
    assert (result["divergent"], result["firing_divergent"]) == (0, 0)


@pytest.mark.parametrize(
    "flags",
    [
        # Seed 308: a Prometheus outage across a restart whose warm-up read failed; the range query's runs
        # of points were rebuilt by its catch-up read, which took a GPU back from a gap as running before it.
        ("--seeds", "308", "--prom-faults-only", "down"),
        # Seed 335: the restart's replay took the coarse load query as due at a tick with no answer of it.
        ("--seeds", "335", "--prom-faults-only", "coarse"),
        # Seed 469: a read failing at a tick a later crash's older save read again whole (the harness' draw).
        ("--seeds", "469", "--prom-faults-only", "coarse", "--failed-reads"),
        # Seed 778: the restart's warm-up read learnt the coarse step mid-read and dropped the empty steps
        # before it, which the process before it had read as gaps.
        ("--seeds", "778", "--prom-faults-only", "coarse"),
    ],
    ids=[
        "range-edges-across-an-outage",
        "coarse-load-not-due-in-the-replay",
        "failure-no-restart-repeats",
        "coarse-step-believed-mid-read",
    ],
)
def test_prometheus_faults_across_restarts_score_as_the_straight_run(flags) -> None:
    result = run_harness(
        "anomaly_restart_fuzz.py",
        *flags,
        "--steps",
        "30",
        "--snapshot",
        "--promql",
        "--prom-faults",
        timeout=300,
    )
    assert (result["divergent"], result["firing_divergent"]) == (0, 0)
