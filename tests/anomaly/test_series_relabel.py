"""A GPU's series relabelled (dcgm-exporter adding ``pod`` when a job lands): the series it replaces is
forgotten at once, so that its detectors' state goes on under the new labels."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from anomaly.promql import PromQLSource, PromQuery
from anomaly.series import SeriesIndex
from anomaly.serieskeys import series_key
from anomaly.service import AnomalyService
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.model import Alert
from tests.anomaly.fakes import FakePrometheus, Sample
from tests.anomaly.test_series_relabel_reads import one_at_a_time

GPU = {"Hostname": "n1", "gpu": "0", "UUID": "GPU-0"}
INTERVAL = 30.0


def test_a_series_whose_gpu_answers_under_new_labels_is_forgotten_at_that_read():
    index = SeriesIndex()
    old = index.ids_for("q", [GPU, {**GPU, "gpu": "1", "UUID": "GPU-1"}], 0.0)
    index.expire(0.0, 900.0)
    new = index.ids_for("q", [{**GPU, "pod": "train-0"}, {**GPU, "gpu": "1", "UUID": "GPU-1"}], 30.0)
    assert index.expire(30.0, 900.0).tolist() == [old[0]]
    assert new[1] == old[1]
    assert index.id_of(series_key("q", {**GPU, "pod": "train-0"})) == new[0]


@pytest.mark.parametrize(
    "second",
    [
        pytest.param([{**GPU, "pod": "a"}, {**GPU, "pod": "b"}], id="two-pods-sharing-the-gpu"),
        pytest.param([{**GPU, "UUID": "GPU-9"}], id="another-gpu"),
        pytest.param([{**GPU, "GPU_I_ID": "2"}], id="another-mig-instance"),
    ],
)
def test_a_series_still_answered_or_of_another_gpu_is_not_forgotten_for_a_new_one(second):
    index = SeriesIndex()
    first = [{**GPU, "pod": "a"}] if len(second) == 2 else [GPU]
    old = index.ids_for("q", first, 0.0)
    index.expire(0.0, 900.0)
    index.ids_for("q", second, 30.0)
    assert index.expire(30.0, 900.0).size == 0
    assert index.id_key(int(old[0])) is not None


def clock_alerts(request, relabel: Callable[[dict[str, str]], None], every: bool = False) -> list[Alert]:
    """The adaptive detector's alerts over 240 reads of 4 GPUs' SM clock, GPU 0's held down from step 20 to
    150 and its labels changed by ``relabel`` from step 40 (``every``: every GPU's)."""
    fake = FakePrometheus()
    request.addfinalizer(fake.close)
    clock = FakeClock()
    start = clock.time()
    query = PromQuery("DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_SM_CLOCK")

    def answer(t: float) -> list[Sample]:
        rng = np.random.default_rng(int(t))
        step = (t - start) / INTERVAL
        out = []
        for g in range(4):
            labels = {"__name__": "DCGM_FI_DEV_SM_CLOCK", "Hostname": "n1", "gpu": str(g), "UUID": f"GPU-{g}"}
            if (g == 0 or every) and step >= 40:
                relabel(labels)
            held = g == 0 and 20 <= step < 150
            out.append((labels, 900.0 if held else 1400.0 + rng.normal(0, 14)))
        return out

    fake.answers[query.sent[0]] = answer
    alerts: list[Alert] = []
    source = PromQLSource(fake.url, [query], clock, timeout_seconds=2.0)
    request.addfinalizer(source.close)
    service = AnomalyService(AnomalyConfig(detectors=["adaptive"]), [source], clock, on_alert=alerts.append)
    service.warm_up()
    for _ in range(240):
        clock.advance(INTERVAL)
        service.infer()
    return alerts


def test_a_gpu_relabelled_mid_fault_hands_its_band_and_alert_over_and_its_recovery_raises_nothing(request):
    """GPU 0's series gaining ``pod`` mid-fault: the band learnt before the fault goes on under the new
    labels, so the fault is still an alert there, the old labels' alert ending as it begins, and the recovery
    is none. Before, the new series learnt the held-down clock as its band and alerted "up" when it
    recovered, while the old labels' alert fired on for 11 minutes."""
    # One alert at a time: the old labels' ends where the new labels' begins, not 11 minutes into it.
    one_at_a_time(clock_alerts(request, lambda labels: labels.update(pod="train-0")))


def test_a_metric_renamed_mid_fault_is_one_alert_until_the_gpu_recovers(request):
    """An exporter upgrade renaming the metric a query selects on every GPU (its alerts carry no metric
    name): one alert, resolved once the clock is back at step 150, not at the rename nor 11 minutes after
    it, and no "up" alert at the recovery."""
    alerts = clock_alerts(
        request, lambda labels: labels.update(__name__="DCGM_FI_DEV_SM_CLOCK_V2"), every=True
    )
    assert [a.status.value for a in alerts] == ["firing", "resolved"], alerts
    ended = alerts[1].ends_at
    assert ended is not None and ended.timestamp() - alerts[0].starts_at.timestamp() > 120 * INTERVAL
