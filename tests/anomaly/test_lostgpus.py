"""The GpuLost rule (``anomaly.lostgpus``) over ``gpuwarden_gpu_up`` read as a range query through the
PromQL source, whose new or returning series ``anomaly.rangeedges`` blanks while the window fills."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from anomaly.promql import PromQLSource, PromQuery
from anomaly.service import AnomalyService
from anomaly.snapshot import load_snapshot, save_snapshot
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.fakes import FakePrometheus

INTERVAL = 30.0
A = {"UUID": "GPU-a", "Hostname": "n1", "gpu": "0", "pci_bus_id": "00000000:18:00.0"}
B = {"UUID": "GPU-b", "Hostname": "n1", "gpu": "1", "pci_bus_id": "00000000:2A:00.0"}


def lost_alerts(
    request,
    b_up: Callable[[float], float | None],
    until: float,
    saved_at: float | None = None,
    a_up: Callable[[float], float | None] = lambda t: 1.0,
) -> list[tuple[str, float]]:
    """GpuLost's alerts (status, seconds from the start to its start or end) of a service reading
    ``min_over_time(gpuwarden_gpu_up[5m])`` of GPU-a and GPU-b of n1 every ``INTERVAL`` until ``until``;
    ``b_up(seconds)``: GPU-b's answer then, None where its series is missing from the answer. An alert
    resolves at its first quiet read, so that its end is when the rule first found the GPU back.
    ``a_up``: GPU-a's, likewise. ``saved_at``: the state is saved after that tick and a new service and
    source start from it one tick later (a restart), reading the tick missed from Prometheus' history."""
    fake = FakePrometheus()
    request.addfinalizer(fake.close)
    clock = FakeClock()
    start = clock.time()
    query = PromQuery("gpuwarden_gpu_up", "min_over_time(gpuwarden_gpu_up[5m])")

    def answer(t: float) -> list[tuple[dict[str, str], float]]:
        a, b = a_up(t - start), b_up(t - start)
        return [(gpu, up) for gpu, up in ((A, a), (B, b)) if up is not None]

    fake.answers[query.sent[0]] = answer
    alerts = []
    cfg = AnomalyConfig(detectors=["signatures"], immediate_resolve_after=1)

    def started() -> AnomalyService:
        source = PromQLSource(fake.url, [query], clock, timeout_seconds=2.0)
        request.addfinalizer(source.close)
        return AnomalyService(cfg, [source], clock, on_alert=alerts.append)

    service = started()
    while clock.time() < start + until:
        clock.advance(INTERVAL)
        service.infer()
        if saved_at is not None and clock.time() == start + saved_at:
            path = request.getfixturevalue("tmp_path") / "anomaly.npz"
            assert save_snapshot(path, service.snapshot())
            clock.advance(INTERVAL)
            service = started()
            service.warm_up(snapshot=load_snapshot(path, cfg))
    lost = [x for x in alerts if x.labels["alertname"] == "GpuLost"]
    assert {x.labels["UUID"] for x in lost} <= {"GPU-b"}, lost
    return [(x.status.value, ((x.ends_at or x.starts_at).timestamp() - start)) for x in lost]


def gone_within(*spans: tuple[float, float], back: float = 1.0) -> Callable[[float], float | None]:
    """GPU-b missing within each ``[from, to)`` of ``spans``; up before the first, reading ``back`` after."""
    return lambda t: None if any(a <= t < b for a, b in spans) else 1.0 if t < spans[0][0] else back


@pytest.mark.parametrize("missing", [2, 3, 10], ids=["2-steps", "3-steps", "10-steps"])
def test_a_gpu_back_after_missing_steps_of_a_range_read_is_not_lost_while_its_window_refills(
    request, missing
):
    # Back, its series reads NaN while RangeEdges blanks the range's length of it: the GPU answered every
    # scrape, yet GpuLost stayed open five and a half minutes more, its blank taken for a loss going on.
    back = 600 + missing * INTERVAL
    alerts = lost_alerts(request, gone_within((600, back)), until=back + 600)
    assert [status for status, _ in alerts] == ["firing", "resolved"], alerts
    assert 600 <= alerts[0][1] <= 600 + INTERVAL
    assert back <= alerts[1][1] <= back + INTERVAL, alerts


def test_a_gpu_gone_back_and_gone_again_under_a_range_read_is_lost_again_within_one_interval(request):
    alerts = lost_alerts(request, gone_within((600, 660), (900, 1e9)), until=1200)
    assert [status for status, _ in alerts] == ["firing", "resolved", "firing"], alerts
    assert 660 <= alerts[1][1] <= 660 + INTERVAL
    assert 900 <= alerts[2][1] <= 900 + INTERVAL, alerts


def test_a_gpu_that_stays_gone_under_a_range_read_stays_lost(request):
    alerts = lost_alerts(request, gone_within((600, 1e9)), until=1200)
    assert alerts == [("firing", 600.0)]


def test_a_gpu_back_reading_down_under_a_range_read_stays_lost_while_its_window_refills(request):
    # What the partly filled window answers is a reading: down (the exporter's up=0) is still lost.
    alerts = lost_alerts(request, gone_within((600, 660), back=0.0), until=1200)
    assert alerts == [("firing", 600.0)]


@pytest.mark.parametrize("saved_at", [690, 780], ids=["saved-while-gone", "saved-while-its-window-refills"])
def test_a_gpu_back_after_a_gap_is_back_at_the_same_read_across_a_restart_from_a_snapshot(request, saved_at):
    # The snapshot holds no frame: the restart reads the history again, and its replay and first live tick
    # slice it per tick (``_window``). What the filling window answered (``Frame.partial``) lost there, the
    # restarted service held the GPU lost again after the replay had found it back, and resolved it 150 s on.
    gone = gone_within((600, 720))
    straight = lost_alerts(request, gone, until=1200)
    restarted = lost_alerts(request, gone, until=1200, saved_at=saved_at)
    assert straight == [("firing", 600.0), ("resolved", 720.0)]
    assert set(restarted) == set(straight), restarted  # the firing alert told again at the restart: one


def test_a_gpu_missing_when_its_host_is_back_from_a_gap_under_a_range_read_is_lost_at_the_first_read_back(
    request,
):
    # Its host's other GPU answers at once (what its filling window answers), so the host is read and the
    # GPU missing from it is lost there, as with a bare selector; it was raised 330 s later, the window full.
    host_gone = gone_within((600, 720))
    alerts = lost_alerts(request, gone_within((600, 1e9)), until=1200, a_up=host_gone)
    assert alerts == [("firing", 720.0)]
