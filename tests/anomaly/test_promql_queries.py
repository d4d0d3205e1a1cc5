"""How a query is read and sent: bare counters, rates after a Prometheus wipe, guarded ranges, filters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anomaly.promql import PromQLSource, PromQuery, filters_series
from anomaly.service import AnomalyService
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.promql_answers import GPU0


@pytest.mark.parametrize(
    ("expr", "kind"),
    [
        ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "counter"),
        ('gpuwarden_xid_errors_total{xid="79"}', "counter"),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter"),
        ("DCGM_FI_DEV_XID_ERRORS", "gauge"),
        ("rate(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL[5m])", "gauge"),
        ("sum by (gpu) (gpuwarden_xid_errors_total)", "gauge"),
        ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL  # double-bit ECC", "counter"),
    ],
    ids=[
        "dcgm-total",
        "total-with-matcher",
        "dcgm-counter",
        "dcgm-gauge",
        "rate",
        "aggregation",
        "commented",
    ],
)
def test_a_bare_selector_of_a_counter_is_read_as_a_counter_unless_declared(expr, kind):
    assert PromQuery("q", expr).series_kind == kind
    assert PromQuery("q", expr, kind="gauge").series_kind == "gauge"
    assert PromQuery("q", expr, kind="counter").series_kind == "counter"


def _requests_rate(wiped_at: float, back_at: float, drop_at: float = math.inf):
    """``rate(requests_total[5m])`` as Prometheus answers it, scraped every 15 s: 100/s with noise; no
    answer while its store is empty after a wipe; from the first two samples after it a window that is
    only partly filled, extrapolated a half-interval past its samples, so it ramps up over five minutes."""
    rng = np.random.default_rng(4)

    def at(t: float) -> list[tuple[dict[str, str], float]]:
        true = (30.0 if t >= drop_at else 100.0) + float(rng.normal(0, 1))
        if wiped_at <= t < back_at + 15:
            return []
        filled = min(300.0, t - back_at + 7.5) if t >= back_at else 300.0
        return [(GPU0, true * filled / 300.0)]

    return at


@pytest.mark.parametrize(
    ("expr", "down"),
    [
        ("rate(requests_total[5m])", 60),
        ("rate(requests_total[5m])", 15),  # guarded, the answer misses one step only: no missed scrape
        ("sum by (gpu) (rate(requests_total[5m:30s]))", 60),
    ],
    ids=["rate", "rate-quick-wipe", "subquery"],
)
def test_a_rate_query_ramping_up_after_a_prometheus_wipe_raises_nothing_but_a_real_drop_still_fires(
    fake_prometheus, expr, down
):
    clock = FakeClock()
    start = clock.time()
    wiped, back = start + 3600, start + 3600 + down
    query = PromQuery("requests_rate", expr)
    # The bare rate is sent guarded (`and requests_total`): the raw series is missing from the wiped store
    # just as the rate is, so Prometheus answers the guarded query as the fake answers.
    fake_prometheus.answers[query.sent[0]] = _requests_rate(wiped, back, drop_at=back + 1800)
    source = PromQLSource(fake_prometheus.url, [query], clock, timeout_seconds=2.0)
    cfg = AnomalyConfig(detectors=["adaptive"], adaptive_metrics=["*"])
    service = AnomalyService(cfg, [source], clock)
    raised = []
    while clock.time() < back + 1500:
        clock.advance(30)
        raised += service.infer().raised
    assert raised == []  # the five-minute ramp after the wipe was scored as a drop of the rate
    while clock.time() < back + 1800 + 300:
        clock.advance(30)
        raised += service.infer().raised
    assert [a.labels["for"] for a in raised] == ["requests_rate"]


@pytest.mark.parametrize(
    ("expr", "guard", "sent"),
    [
        ("rate(x[5m])", None, "rate(x[5m]) and x"),
        ("rate(x[5m])", False, "rate(x[5m])"),
        ("max by (pod) (rate(x[5m]))", None, "max by (pod) (rate(x[5m]) and x)"),
        ("sum by (pod) (rate(x[5m]))", None, "sum by (pod) (rate(x[5m]))"),
        ("sum by (pod) (rate(x[5m]))", True, "sum by (pod) (rate(x[5m]) and x)"),
        ("rate(x[5m]) and x", None, "rate(x[5m]) and x"),
        ("rate(x[5m]) * 8", None, "rate(x[5m]) * 8"),
    ],
    ids=["bare", "bare-declined", "max-by", "sum-by", "sum-by-asked", "written", "arithmetic"],
)
def test_a_range_query_is_sent_guarded_where_its_shape_and_guard_say(fake_prometheus, expr, guard, sent):
    clock = FakeClock()
    source = PromQLSource(
        fake_prometheus.url, [PromQuery("q", expr, guard=guard)], clock, timeout_seconds=2.0
    )
    source.read(clock.time() - 30, clock.time())
    assert [r["query"] for r in fake_prometheus.requests] == [sent]


@pytest.mark.parametrize(
    ("expr", "filters"),
    [
        ("up == 0", True),
        ("DCGM_FI_DEV_ROW_REMAP_PENDING > 0", True),
        ("sum by (node) (x) <= 3", True),
        ("x > bool 0", False),
        ("x >= bool 0", False),
        ("x > BOOL 0", False),  # PromQL's keywords are any case
        ('up{job!="a"}', False),
        ('x{a=~"b>c"}', False),
        ("rate(x[5m]) and x", False),
        ('label_replace(x, "a", "<", "b", "c")', False),
        ("x  # alert when > 90", False),  # a comment runs to the end of its line
        ("x # > 90\n> 0", True),
        ('x{path="a#b"} > 0', True),  # a # in a string starts no comment
        ('x{path="a#b", x=~">1"}', False),
        ("x{path='a#b'} # '>'\n", False),
        ("x # it's > 0", False),  # a quote in a comment opens no string
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_query_is_a_filter_where_it_compares_without_bool(expr, filters):
    # Its series answer only the steps where they pass: carried over their absence, a series passing for a
    # step every 30 minutes read as present throughout (see test_service_due_steps).
    assert filters_series(expr) is filters
