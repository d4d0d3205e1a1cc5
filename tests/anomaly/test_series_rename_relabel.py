"""A GPU renamed and relabelled at once in a query of several metrics (an exporter upgrade renaming its SM
clock as a job's ``pod`` label lands on all its series): each old series is followed to its new one, the
renamed one to the GPU's one new series of a metric it had none of."""

from __future__ import annotations

import pytest

from anomaly.series import SeriesIndex
from tests.anomaly.test_series_relabel_reads import NAME, clock_alerts, one_at_a_time, uuid_labels

GPU = {"Hostname": "n1", "gpu": "0", "UUID": "GPU-0"}
CLOCK, POWER = {"__name__": "clock", **GPU}, {"__name__": "power", **GPU}
OTHER = {"__name__": "clock", **GPU, "gpu": "1", "UUID": "GPU-1"}


def replaced_after(first: list[dict[str, str]], second: list[dict[str, str]]) -> dict[str, str]:
    """The series the read of ``second`` after ``first`` forgot as answered under new labels, by metric:
    the old series' metric to the new series' metric and ``pod``."""
    index = SeriesIndex()
    index.ids_for("q", first, 0.0)
    index.expire(0.0, 900.0)
    index.ids_for("q", second, 30.0)
    index.expire(30.0, 900.0)
    assert all(index.id_of(old) is None for old in index.replaced)
    return {dict(old[1])["__name__"]: f"{dict(new[1])['__name__']}/{dict(new[1]).get('pod', '')}"
            for old, new in index.replaced.items()}  # fmt: skip


def test_a_gpu_renamed_and_relabelled_at_once_follows_each_series_to_its_own_new_one():
    new = [{**CLOCK, "__name__": "clock_v2", "pod": "a"}, {**POWER, "pod": "a"}, OTHER]
    assert replaced_after([CLOCK, POWER, OTHER], new) == {"clock": "clock_v2/a", "power": "power/a"}


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param([CLOCK, POWER], [{**CLOCK, "__name__": "clock_v2", "pod": "a"},
                                      {**POWER, "__name__": "power_v2", "pod": "a"}], id="two-renamed"),
        pytest.param([{**CLOCK, "pod": "a"}, {**CLOCK, "pod": "b"}, {**POWER, "pod": "a"}],
                     [{**CLOCK, "pod": "b"}, {**POWER, "pod": "c"},
                      {**CLOCK, "__name__": "util", "pod": "c"}],
                     id="its-metric-still-answered"),
    ],
)  # fmt: skip
def test_a_renamed_series_is_not_followed_where_which_metric_became_which_is_ambiguous(first, second):
    replaced = replaced_after(first, second)
    assert "clock" not in replaced
    assert "power" not in replaced or replaced["power"].startswith("power/")


POWER_NAME = "DCGM_FI_DEV_POWER_USAGE"


def renamed_alerts(request, outage: range = range(0)):
    """The alerts of ``{__name__=~"CLOCK|CLOCK_V2|POWER"}``, GPU 0's clock held down from step 20 to 150,
    renamed and ``pod`` added to both its series at step 40; Prometheus failing the reads of ``outage``."""

    def labelled(g: int, step: int) -> dict[str, str]:
        moved = {"pod": "train-0", "__name__": f"{NAME}_V2"} if g == 0 and step >= 40 else {}
        return {**uuid_labels(g), **moved}

    expr = f'{{__name__=~"{NAME}|{NAME}_V2|{POWER_NAME}"}}'
    return clock_alerts(request, labelled, expr, outage=outage, power=POWER_NAME)


def test_a_gpu_renamed_and_relabelled_mid_fault_is_never_judged_against_another_metrics_band(request):
    """GPU 0's clock renamed and relabelled mid-fault: nothing says its clock is "up" while it is held down.
    Before, the new clock series took the power's band (300 W) as its own and alerted "up" at once, the old
    labels' alert firing on beside it for 11 minutes."""
    alerts = renamed_alerts(request)
    held = [a for a in alerts if a.starts_at.timestamp() - alerts[0].starts_at.timestamp() < 120 * 30]
    said = [a.labels["deviation"] for a in held if a.status.value == "firing"]
    assert said[0] == "down" and "up" not in said, alerts


@pytest.mark.parametrize("outage", [range(0), range(30, 56)], ids=["live", "catch-up"])
def test_a_gpu_renamed_and_relabelled_mid_fault_hands_its_band_and_alert_over(request, outage):
    """The renamed clock series takes up the old one's band: the fault is still "down" under the new labels,
    the old labels' alert ending as it begins, and the recovery is none. Before, both old series' bands were
    parked under the GPU and the renamed series, finding none of its metric's, took neither: it learnt the
    held-down clock as normal and alerted "up" when the clock recovered. So too where the change falls in an
    outage, the read catching it up holding both label sets."""
    alerts = [a for a in renamed_alerts(request, outage) if a.labels["alertname"] == "GpuwardenAnomaly"]
    assert {a.labels["metric"] for a in alerts} == {NAME, f"{NAME}_V2"}, alerts
    one_at_a_time(alerts)
