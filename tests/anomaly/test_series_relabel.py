"""A GPU's series relabelled (dcgm-exporter adding ``pod`` when a job lands): the series it replaces is
forgotten at once, so that its detectors' state goes on under the new labels."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.promql import PromQLSource, PromQuery
from anomaly.series import SeriesIndex, series_key
from anomaly.service import AnomalyService
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.fakes import FakePrometheus, Sample

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


def test_a_gpu_relabelled_mid_fault_hands_its_band_and_alert_over_and_its_recovery_raises_nothing(request):
    """An SM clock held down from step 20 to 150, its series gaining ``pod`` at step 40: the band learnt
    before the fault goes on under the new labels, so the fault is still an alert there, the old labels'
    alert ending as it begins, and the recovery is none. Before, the new series learnt the held-down clock as
    its band and alerted "up" when it recovered, while the old labels' alert fired on for 11 minutes."""
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
            labels = {"Hostname": "n1", "gpu": str(g), "UUID": f"GPU-{g}"}
            if g == 0 and step >= 40:
                labels["pod"] = "train-0"
            held = g == 0 and 20 <= step < 150
            out.append((labels, 900.0 if held else 1400.0 + rng.normal(0, 14)))
        return out

    fake.answers[query.sent[0]] = answer
    alerts = []
    source = PromQLSource(fake.url, [query], clock, timeout_seconds=2.0)
    request.addfinalizer(source.close)
    service = AnomalyService(AnomalyConfig(detectors=["adaptive"]), [source], clock, on_alert=alerts.append)
    service.warm_up()
    for _ in range(240):
        clock.advance(INTERVAL)
        service.infer()
    raised = [(a.labels.get("pod", ""), a.labels["deviation"]) for a in alerts if a.status.value == "firing"]
    assert ("train-0", "up") not in raised
    assert ("train-0", "down") in raised
    # One alert at a time: the old labels' ends where the new labels' begins, not 11 minutes into it.
    ended = [a.ends_at for a in alerts if a.status.value == "resolved" and "pod" not in a.labels]
    began = [a.starts_at for a in alerts if a.status.value == "firing" and "pod" in a.labels]
    assert len(ended) == len(began) == 1
    assert ended[0] is not None and began[0] is not None and ended[0] <= began[0]
