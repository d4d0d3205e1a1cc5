"""The signatures detector's XIDs: the catalog's actions, a new XID event, DCGM's last-XID gauge and its
gaps and garbage readings, and the driver's recovery action."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.signatures import load_xid_catalog
from gpuwarden.model import RecommendedAction
from gpuwarden.xid import xid_action
from tests.anomaly.signature_feeds import GPU, Feed, fired


def test_the_catalog_maps_action_buckets_to_recommended_actions():
    catalog = load_xid_catalog()
    assert xid_action(catalog[79]) is RecommendedAction.RESTART_NODE
    assert xid_action(catalog[48]) is RecommendedAction.DRAIN_AND_RESET
    assert xid_action(catalog[13]) is RecommendedAction.RESTART_APP
    assert xid_action(catalog[63]) is RecommendedAction.IGNORE
    assert len(catalog) > 90


@pytest.mark.parametrize(
    ("xid", "action"),
    [
        (79, RecommendedAction.RESTART_NODE),
        (48, RecommendedAction.DRAIN_AND_RESET),
        (13, RecommendedAction.RESTART_APP),
    ],
    ids=["fell-off-bus", "dbe", "app-exception"],
)
def test_a_new_xid_event_fires_once_with_the_catalog_action(xid, action):
    feed = Feed()
    labels = [{**GPU, "xid": str(xid)}]
    assert fired(feed.tick(("gpuwarden_xid_errors_total", labels, [0], "counter"))) == []
    hits = fired(feed.tick(("gpuwarden_xid_errors_total", labels, [1], "counter")))
    assert len(hits) == 1
    f, i = hits[0]
    assert f.action_at(i) is action
    assert f.labels[i]["xid"] == str(xid)
    assert f.alert_labels["alertname"] == "GpuXidError"
    assert fired(feed.tick(("gpuwarden_xid_errors_total", labels, [1], "counter"))) == []


def test_an_xid_series_whose_label_is_no_number_fires_to_be_investigated_instead_of_raising():
    feed = Feed()
    labels = [{**GPU, "xid": "\u2077\u2079"}, {**GPU, "xid": "48"}]  # superscript digits: no XID code
    feed.tick(("gpuwarden_xid_errors_total", labels, [0, 0], "counter"))
    hits = fired(feed.tick(("gpuwarden_xid_errors_total", labels, [1, 1], "counter")))
    assert sorted((f.labels[i]["xid"], f.action_at(i)) for f, i in hits) == [
        ("48", RecommendedAction.DRAIN_AND_RESET),
        ("\u2077\u2079", RecommendedAction.INVESTIGATE),
    ]


def test_the_dcgm_last_xid_gauge_fires_when_it_changes():
    feed = Feed()
    feed.tick(("DCGM_FI_DEV_XID_ERRORS", [GPU], [0], "gauge"))
    hits = fired(feed.tick(("DCGM_FI_DEV_XID_ERRORS", [GPU], [48], "gauge")))
    assert [f.action_at(i) for f, i in hits] == [RecommendedAction.DRAIN_AND_RESET]


def test_in_a_mixed_fleet_the_gauge_reports_the_gpus_gpuwardens_exporter_does_not_count():
    # n1 runs gpuwarden's exporter (gpu_up, XID counters, and the DCGM gauge too); n2 dcgm-exporter alone.
    feed = Feed()
    other = {"gpu": "0", "UUID": "GPU-b", "Hostname": "n2"}
    counter = [{**GPU, "xid": "13"}]

    def tick(gauge_a: float, gauge_b: float, counted: float):
        return feed.tick(
            ("gpuwarden_gpu_up", [GPU], [1], "gauge"),
            ("gpuwarden_xid_errors_total", counter, [counted], "counter"),
            ("DCGM_FI_DEV_XID_ERRORS", [GPU, other], [gauge_a, gauge_b], "gauge"),
        )

    tick(0, 0, 1)
    hits = fired(tick(79, 79, 2))  # both GPUs: XID 79; n1's counter says XID 13 once more (its own)
    found = sorted((f.labels[i]["Hostname"], f.labels[i]["xid"]) for f, i in hits)
    assert found == [("n1", "13"), ("n2", "79")]  # n1's gauge is not reported twice; n2's is reported


def test_the_gauge_does_not_raise_an_xid_again_at_a_tick_its_gpus_counters_were_not_due():
    # The XID counters on a longer step than the gauge: at a tick between two of their steps, the gauge's
    # new XID 79 on a GPU the exporter counts was raised, and the counter raised it again at its next step.
    feed = Feed()
    up = ("gpuwarden_gpu_up", [GPU], [1], "gauge")
    counter = "gpuwarden_xid_errors_total"
    feed.tick(
        up,
        (counter, [{**GPU, "xid": "13"}], [1], "counter"),
        ("DCGM_FI_DEV_XID_ERRORS", [GPU], [13], "gauge"),
    )
    between = fired(
        feed.tick(up, ("DCGM_FI_DEV_XID_ERRORS", [GPU], [79], "gauge"), not_due=frozenset({counter}))
    )
    counted = fired(
        feed.tick(
            up,
            (counter, [{**GPU, "xid": "13"}, {**GPU, "xid": "79"}], [1, 1], "counter"),
            ("DCGM_FI_DEV_XID_ERRORS", [GPU], [79], "gauge"),
        )
    )
    assert between == []
    assert [(f.query, f.labels[i]["xid"]) for f, i in counted] == [(counter, "79")]


def test_a_config_that_reads_the_xid_gauge_and_gpu_up_but_no_counters_relies_on_the_gauge():
    feed = Feed()
    up = ("gpuwarden_gpu_up", [GPU], [1], "gauge")
    feed.tick(up, ("DCGM_FI_DEV_XID_ERRORS", [GPU], [0], "gauge"))
    hits = fired(feed.tick(up, ("DCGM_FI_DEV_XID_ERRORS", [GPU], [79], "gauge")))
    assert [f.labels[i]["xid"] for f, i in hits] == ["79"]


def test_a_gap_in_the_dcgm_xid_gauge_neither_raises_again_nor_forgets_the_last_xid():
    feed = Feed()
    q = "DCGM_FI_DEV_XID_ERRORS"
    feed.tick((q, [GPU], [0], "gauge"))
    assert len(fired(feed.tick((q, [GPU], [79], "gauge")))) == 1
    assert fired(feed.tick((q, [GPU], [np.nan], "gauge"))) == []  # a missed scrape
    assert fired(feed.tick((q, [GPU], [79], "gauge"))) == []  # the same XID 79, not a new one
    feed.tick((q, [GPU], [np.nan], "gauge"))
    hits = fired(feed.tick((q, [GPU], [48], "gauge")))  # a new XID right after a gap
    assert [f.labels[i]["xid"] for f, i in hits] == ["48"]


@pytest.mark.parametrize(
    ("last", "garbage"),
    [(0.0, 808334905.0), (79.0, 808334905.0), (79.0, 0.0)],
    ids=["none-yet", "after-xid-79", "zero-after-xid-79"],
)
def test_one_garbage_reading_of_the_xid_gauge_raises_nothing_and_its_fall_back_no_xid_again(last, garbage):
    # 808334905 raised "XID 808334905 (not in the catalog)", and the fall back to 79 (after it, or after a 0)
    # raised XID 79 and its node restart again.
    feed = Feed()
    q = "DCGM_FI_DEV_XID_ERRORS"
    feed.tick((q, [GPU], [last], "gauge"))
    for value in (garbage, last, last):
        assert fired(feed.tick((q, [GPU], [value], "gauge"))) == []
    hits = fired(feed.tick((q, [GPU], [48], "gauge")))  # a real XID right after: at once
    assert [(f.labels[i]["xid"], f.action_at(i)) for f, i in hits] == [
        ("48", RecommendedAction.DRAIN_AND_RESET)
    ]


def test_an_xid_gauge_cleared_for_two_reads_raises_the_same_xid_again_when_it_happens_again():
    feed = Feed()
    q = "DCGM_FI_DEV_XID_ERRORS"
    feed.tick((q, [GPU], [79], "gauge"))
    assert [len(fired(feed.tick((q, [GPU], [v], "gauge")))) for v in (0, 0, 79)] == [0, 0, 1]


def test_an_xid_code_beyond_any_defined_raises_once_the_next_read_still_has_it_and_a_new_small_one_at_once():
    feed = Feed()
    q = "DCGM_FI_DEV_XID_ERRORS"
    feed.tick((q, [GPU], [0], "gauge"))
    assert fired(feed.tick((q, [GPU], [5000], "gauge"))) == []
    hits = fired(feed.tick((q, [GPU], [5000], "gauge")))  # a last-XID gauge keeps its code: believed
    assert [(f.labels[i]["xid"], f.action_at(i)) for f, i in hits] == [
        ("5000", RecommendedAction.INVESTIGATE)
    ]
    assert fired(feed.tick((q, [GPU], [5000], "gauge"))) == []
    hits = fired(feed.tick((q, [GPU], [173], "gauge")))  # not in the catalog, but a code NVIDIA may add
    assert [(f.labels[i]["xid"], f.action_at(i)) for f, i in hits] == [("173", RecommendedAction.INVESTIGATE)]


@pytest.mark.parametrize(
    ("code", "action", "words"),
    [
        (1, RecommendedAction.DRAIN_AND_RESET, "GPU reset"),
        (2, RecommendedAction.RESTART_NODE, "node reboot"),
        (3, RecommendedAction.RESTART_APP, "drain P2P"),
        (4, RecommendedAction.DRAIN_AND_RESET, "drain P2P and reset the GPU"),
        (5, RecommendedAction.INVESTIGATE, "recover the IMEX domain"),
        (6, RecommendedAction.DRAIN_AND_RESET, "PCIe bus reset"),
        (7, RecommendedAction.RESTART_NODE, "system reboot"),
    ],
    ids=[
        "gpu-reset",
        "node-reboot",
        "drain-p2p",
        "drain-and-reset",
        "imex-domain",
        "bus-reset",
        "system-reboot",
    ],
)
def test_the_drivers_recovery_action_becomes_the_recommendation_and_its_code_goes_on_the_alert(
    code, action, words
):
    """The alert carried no code, so alerting took a drain of P2P traffic (3) for a reset; a bus reset (6)
    and a system reboot (7), which NVML names, were "investigate". A drain of P2P recommended a cordon and
    drain of the node, where NVIDIA asks only that the processes doing peer-to-peer traffic end (restart the
    workload)."""
    feed = Feed()
    assert fired(feed.tick(("gpuwarden_gpu_recovery_action", [GPU], [0], "gauge"))) == []
    hits = fired(feed.tick(("gpuwarden_gpu_recovery_action", [GPU], [code], "gauge")))
    assert [f.action_at(i) for f, i in hits] == [action]
    assert [f.labels[i]["recovery_action"] for f, i in hits] == [str(code)]
    assert [f.summary_at(i) for f, i in hits] == [f"the driver asks for recovery action {code} ({words})"]
