"""A GPU's series relabelled where the last leftovers were: inside one read of several steps (the catch-up
after an outage), without a ``UUID`` label (followed by node and index), and renamed in a query that selects
both metric names."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from anomaly.promql import PromQLSource, PromQuery
from anomaly.series import CounterRates, SeriesIndex, build_view
from anomaly.serieskeys import series_key
from anomaly.service import AnomalyService
from anomaly.sources import Frame
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig, AnomalyQueryConfig
from gpuwarden.model import Alert
from tests.anomaly.fakes import FakePrometheus, Sample

INTERVAL = 30.0
NAME = "DCGM_FI_DEV_SM_CLOCK"
GPU = {"Hostname": "n1", "gpu": "0", "UUID": "GPU-0"}
BARE = {"Hostname": "n1", "gpu": "0"}  # no UUID: an exporter labelling by node and index


def uuid_labels(g: int) -> dict[str, str]:
    return {"Hostname": "n1", "gpu": str(g), "UUID": f"GPU-{g}"}


def bare_labels(g: int) -> dict[str, str]:
    return {"Hostname": "n1", "gpu": str(g)}


def clock_alerts(
    request,
    labelled: Callable[[int, int], dict[str, str]],
    expr: str = NAME,
    outage: range = range(0),
    power: str | None = None,
) -> list[Alert]:
    """The adaptive detector's alerts over 240 reads of 4 GPUs' SM clock, GPU 0's held down from step 20 to
    150, each GPU's labels at each step ``labelled(gpu, step)``; Prometheus failing every read of the steps
    in ``outage`` (the next read catches them up); with ``power``, each GPU's power too, steady, under that
    metric name and the same labels."""
    fake = FakePrometheus()
    request.addfinalizer(fake.close)
    clock = FakeClock()
    start = clock.time()

    def answer(t: float) -> list[Sample]:
        rng = np.random.default_rng(int(t))
        step = round((t - start) / INTERVAL)
        held = [900.0 if g == 0 and 20 <= step < 150 else 1400.0 + rng.normal(0, 14) for g in range(4)]
        clocks = [({"__name__": NAME, **labelled(g, step)}, held[g]) for g in range(4)]
        powers = [({**labels, "__name__": power}, 300.0 + rng.normal(0, 3)) for labels, _ in clocks]
        return clocks + (powers if power else [])

    fake.answers[expr] = answer
    alerts: list[Alert] = []
    query = AnomalyQueryConfig(name="sm_clock", expr=expr, adaptive=True)
    source = PromQLSource(fake.url, [PromQuery("sm_clock", expr)], clock, timeout_seconds=2.0)
    request.addfinalizer(source.close)
    config = AnomalyConfig(detectors=["adaptive"], queries=[query])
    service = AnomalyService(config, [source], clock, on_alert=alerts.append)
    service.warm_up()
    for step in range(1, 241):
        clock.advance(INTERVAL)
        if step in outage:
            fake.errors[expr] = (503, "down for maintenance")
        else:
            fake.errors.clear()
        service.infer()
    return alerts


def one_at_a_time(alerts: list[Alert]) -> None:
    """GPU 0's fault is one alert at a time through its relabel (``pod`` added): the old labels' alert ends
    where the new labels' begins, the fault is still "down" there and its recovery raises nothing."""
    alerts = [a for a in alerts if a.labels["alertname"] == "GpuwardenAnomaly"]  # not the outage's
    raised = [(a.labels.get("pod", ""), a.labels["deviation"]) for a in alerts if a.status.value == "firing"]
    assert ("train-0", "up") not in raised
    assert ("train-0", "down") in raised
    ended = [a.ends_at for a in alerts if a.status.value == "resolved" and "pod" not in a.labels]
    began = [a.starts_at for a in alerts if a.status.value == "firing" and "pod" in a.labels]
    assert len(ended) == len(began) == 1
    assert ended[0] is not None and began[0] is not None and ended[0] <= began[0]


def with_pod(base: Callable[[int], dict[str, str]], at: int = 40) -> Callable[[int, int], dict[str, str]]:
    return lambda g, step: {**base(g), **({"pod": "train-0"} if g == 0 and step >= at else {})}


def test_a_gpu_relabelled_during_an_outage_hands_its_band_and_alert_over_at_the_catch_up(request):
    """``pod`` added at step 40, Prometheus failing from step 30 to 55: the catch-up read holds both label
    sets. Before, the old series was kept 15 minutes beside the new one, its alert firing on, and the new
    one learnt the held-down clock as its band: an "up" alert at the recovery."""
    one_at_a_time(clock_alerts(request, with_pod(uuid_labels), outage=range(30, 56)))


@pytest.mark.parametrize("outage", [range(0), range(30, 56)], ids=["live", "catch-up"])
def test_a_gpu_without_a_uuid_is_followed_to_new_labels_by_its_node_and_index(request, outage):
    """The series name no UUID (``Hostname`` and ``gpu`` only): before, the relabelled GPU was a new one,
    its old labels' alert fired on for 10 minutes and the recovery was an "up" alert."""
    one_at_a_time(clock_alerts(request, with_pod(bare_labels), outage=outage))


def test_a_metric_renamed_node_by_node_in_a_query_of_both_names_is_one_alert(request):
    """``{__name__=~"OLD|NEW"}`` through an exporter upgrade of GPUs 0-1 at step 40 and 2-3 at step 60: the
    reads between hold both names, so alerts name their ``metric`` from then on. Before, GPU 0's alert was
    resolved at the rename and raised again as ``metric="..._V2"``; now it goes on until the recovery."""

    def renamed(g: int, step: int) -> dict[str, str]:
        return {**uuid_labels(g), **({"__name__": f"{NAME}_V2"} if step >= (40 if g < 2 else 60) else {})}

    expr = f'{{__name__=~"{NAME}|{NAME}_V2"}}'
    alerts = clock_alerts(request, renamed, expr)
    assert [a.status.value for a in alerts] == ["firing", "resolved"], alerts
    ended = alerts[1].ends_at
    assert ended is not None and ended.timestamp() - alerts[0].starts_at.timestamp() > 120 * INTERVAL


def test_a_gpu_relabelled_in_a_query_of_two_metrics_hands_each_its_own_band_and_alert(request):
    """``{__name__=~"CLOCK|POWER"}``, both of GPU 0 gaining ``pod`` at step 40 mid-fault: the clock's band and
    alert go on under the clock's new series. Before, both went to whichever new series sorted last and both
    bands were parked under one key: the new clock series took the power's band and alerted "up"."""
    power = "DCGM_FI_DEV_POWER_USAGE"

    expr = f'{{__name__=~"{NAME}|{power}"}}'
    alerts = clock_alerts(request, with_pod(uuid_labels), expr, power=power)
    assert {a.labels["metric"] for a in alerts} == {NAME}, alerts
    one_at_a_time(alerts)


def frame(rows: list[tuple[dict[str, str], list[float]]]) -> Frame:
    """One read of four steps (at 30, 60, 90, 120), a row per label set; NaN: no sample."""
    return Frame(
        "q", [r[0] for r in rows], np.array([30.0, 60.0, 90.0, 120.0]), np.array([v for _, v in rows])
    )


NAN = float("nan")


def test_a_relabel_inside_one_read_is_one_series_and_the_old_one_is_forgotten_at_that_read():
    index = SeriesIndex()
    old = index.ids_for("q", [GPU], 0.0)
    index.expire(0.0, 900.0)
    view = build_view([frame([(GPU, [1.0, 2.0, NAN, NAN]), ({**GPU, "pod": "a"}, [NAN, NAN, 3.0, 4.0])])],
                      index, CounterRates(), 120.0)  # fmt: skip
    new = index.id_of(series_key("q", {**GPU, "pod": "a"}))
    assert [s.ids.tolist() for s in view.steps] == [[new]] * 4
    assert [float(s.value[0]) for s in view.steps] == [1.0, 2.0, 3.0, 4.0]
    assert index.expire(120.0, 900.0).tolist() == old.tolist()
    assert index.replaced == {series_key("q", GPU): series_key("q", {**GPU, "pod": "a"})}


def test_a_relabel_inside_one_read_of_two_metrics_keeps_each_metric_its_own_series():
    index = SeriesIndex()
    clock, power = {"__name__": "clock", **GPU}, {"__name__": "power", **GPU}
    old = index.ids_for("q", [clock, power], 0.0)
    index.expire(0.0, 900.0)
    rows = [(lab, [1.0, 2.0, NAN, NAN]) for lab in (clock, power)]
    rows += [({**lab, "pod": "a"}, [NAN, NAN, 3.0, 4.0]) for lab in (clock, power)]
    view = build_view([frame(rows)], index, CounterRates(), 120.0)
    new = [index.id_of(series_key("q", {**lab, "pod": "a"})) for lab in (clock, power)]
    assert [s.ids.tolist() for s in view.steps] == [new] * 4
    assert sorted(index.expire(120.0, 900.0).tolist()) == sorted(old.tolist())
    assert index.replaced == {
        series_key("q", lab): series_key("q", {**lab, "pod": "a"}) for lab in (clock, power)
    }


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param([({**GPU, "pod": "a"}, [1.0, 2.0, 3.0, NAN]), ({**GPU, "pod": "b"}, [NAN, 2.0, 3, 4])],
                     id="two-pods-side-by-side"),
        pytest.param([(GPU, [1.0, 2.0, NAN, NAN]), ({**GPU, "UUID": "GPU-9"}, [NAN, NAN, 3.0, 4.0])],
                     id="another-gpu"),
        pytest.param([(BARE, [1.0, 2.0, NAN, NAN]), ({**BARE, "Hostname": "n2"}, [NAN, NAN, 3.0, 4.0])],
                     id="another-node-without-uuid"),
    ],
)  # fmt: skip
def test_series_of_one_read_that_are_not_one_gpu_relabelled_stay_apart(rows):
    index = SeriesIndex()
    view = build_view([frame(rows)], index, CounterRates(), 120.0)
    assert len({int(i) for s in view.steps for i in s.ids}) == 2
    assert index.expire(120.0, 900.0).size == 0


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param([BARE], [{**BARE, "pod": "a"}, {**BARE, "pod": "b"}], id="two-new-series-of-the-gpu"),
        pytest.param([{**BARE, "pod": "a"}, {**BARE, "pod": "b"}], [{**BARE, "pod": "c"}], id="two-gone"),
        pytest.param([BARE], [{**BARE, "Hostname": "n2"}], id="another-node"),
        pytest.param([{"Hostname": "n1"}], [{"Hostname": "n1", "pod": "a"}], id="no-gpu-index"),
    ],
)
def test_a_series_without_a_uuid_is_not_followed_where_its_gpu_is_ambiguous(first, second):
    index = SeriesIndex()
    old = index.ids_for("q", first, 0.0)
    index.expire(0.0, 900.0)
    index.ids_for("q", second, 30.0)
    assert index.expire(30.0, 900.0).size == 0
    assert all(index.id_key(int(sid)) is not None for sid in old)


def test_a_series_without_a_uuid_is_followed_to_its_one_new_series():
    index = SeriesIndex()
    old = index.ids_for("q", [BARE, {**BARE, "gpu": "1"}], 0.0)
    index.expire(0.0, 900.0)
    index.ids_for("q", [{**BARE, "pod": "a"}, {**BARE, "gpu": "1"}], 30.0)
    assert index.expire(30.0, 900.0).tolist() == [old[0]]
