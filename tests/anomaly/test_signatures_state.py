"""The signatures detector's state: per-GPU state dropped under fleet churn, and a detector taken up from its
saved state reading on as the one that saved it, or refusing a state that does not fit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from anomaly.signatures import SignatureDetector
from anomaly.snapshot import State
from tests.anomaly.signature_feeds import GPU, SBE, Feed, fired

LINK_STATUS = "DCGM_FI_DEV_NVLINK_LINK_STATUS"


@pytest.mark.parametrize(
    "read",
    [
        lambda gpus: [(SBE, gpus, [0.0] * len(gpus), "counter")],
        lambda gpus: [(LINK_STATUS, [{**g, "link": "0"} for g in gpus], [1.0] * len(gpus), "gauge")],
    ],
    ids=["sbe-read-times", "links-seen-active"],
)
def test_per_gpu_state_of_gpus_gone_for_the_ledgers_memory_is_dropped_under_fleet_churn(read):
    """The single-bit storm rule's last-read time per GPU, and the links seen active, were never dropped:
    GPUs replaced over months of churn stayed in them for good."""
    feed = Feed()
    feed.det = SignatureDetector(counter_memory_seconds=300.0)  # 10 ticks of 30 s
    held = []
    for tick in range(60):  # four new GPUs a tick, each read for three ticks, then gone for good
        gpus = [
            {"gpu": str(i), "UUID": f"GPU-{tick - age}-{i}", "Hostname": "n1"}
            for age in range(3)
            for i in range(4)
        ]
        feed.tick(*read(gpus))
        held.append(feed.det.held())
    assert held[-1] == held[30] > 0, held  # flat once GPUs leave as fast as they come


def _mid_fault_ticks() -> list[list[tuple[str, list[dict[str, str]], list[float], str]]]:
    """Reads that leave every rule's state half-way: a counter jump held, a counter read 0 after a count, an
    implausible XID code on the gauge held, a single-bit count's time, links seen active, a GPU vanished,
    the GPUs the counters count; then the reads that complete each."""
    b, c = {**GPU, "gpu": "1", "UUID": "GPU-b"}, {**GPU, "gpu": "2", "UUID": "GPU-c"}
    links = [{**GPU, "link": "0"}, {**GPU, "link": "1"}]

    def tick(up, xid13, dbe, sbe, gauge, link1, xid79=()):
        xid_labels = [{**GPU, "xid": "13"}, *([{**b, "xid": "79"}] if xid79 else [])]
        return [
            ("gpuwarden_gpu_up", [GPU, b, c][:up], [1] * up, "gauge"),
            ("gpuwarden_xid_errors_total", xid_labels, [xid13, *xid79], "counter"),
            ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", [GPU, b], dbe, "counter"),
            ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", [GPU], [sbe], "counter"),
            ("DCGM_FI_DEV_XID_ERRORS", [c], [gauge], "gauge"),
            ("DCGM_FI_DEV_NVLINK_LINK_STATUS", links, [1, link1], "gauge"),
        ]

    before = [tick(3, 1, [0, 4], 10, 31, 1), tick(2, 1, [2e7, 0], 20, 5e8, 1)]
    after = [tick(2, 2, [2e7, 0], 2000, 5e8, 0, xid79=(1,)), tick(2, 2, [2e7, 3], 2000, 43, 0, xid79=(1,))]
    return [*before, *after]


def test_a_detector_taken_up_from_its_state_reads_on_exactly_as_the_one_that_saved_it():
    """Through JSON and copies of its arrays, as a snapshot file keeps them: each rule's next reads score as
    they would have without the restart (a fresh detector would read them as history)."""
    ticks = _mid_fault_ticks()
    straight, restarted = Feed(), Feed()
    for frames in ticks[:2]:
        straight.tick(*frames)
        restarted.tick(*frames)
    state = straight.det.state()
    restarted.det = SignatureDetector()
    restarted.det.restore(
        State(json.loads(json.dumps(state.meta)), {k: a.copy() for k, a in state.arrays.items()})
    )
    again = restarted.det.state()
    assert json.loads(json.dumps(again.meta)) == json.loads(json.dumps(state.meta))
    assert all(np.array_equal(again.arrays[k], a, equal_nan=True) for k, a in state.arrays.items())
    hits = []
    for frames in ticks[2:]:
        found, found_again = straight.tick(*frames), restarted.tick(*frames)
        assert [(f.query, f.score.tolist(), f.labels) for f in found_again] == [
            (f.query, f.score.tolist(), f.labels) for f in found
        ]
        hits.append(sorted((f.alert_labels["alertname"], f.labels[i]["UUID"]) for f, i in fired(found)))
    assert hits == [
        [
            ("GpuDoubleBitEcc", "GPU-a"),  # the jump held at the save, still there: it counts
            ("GpuLost", "GPU-c"),  # vanished before the save
            ("GpuNvlinkDown", "GPU-a"),  # a link seen active before the save
            ("GpuSingleBitEccStorm", "GPU-a"),  # over the time since the count read before the save
            ("GpuXidError", "GPU-a"),  # one more XID 13
            ("GpuXidError", "GPU-b"),  # a new XID 79 series on a GPU known before the save
            ("GpuXidError", "GPU-c"),  # the gauge's code held at the save, confirmed
        ],
        [
            ("GpuDoubleBitEcc", "GPU-b"),  # the errors after a reset read before the save
            ("GpuLost", "GPU-c"),
            ("GpuNvlinkDown", "GPU-a"),
            ("GpuXidError", "GPU-c"),
        ],
    ]


def test_a_state_whose_ledger_arrays_do_not_fit_its_keys_is_refused():
    feed = Feed()
    for frames in _mid_fault_ticks()[:2]:
        feed.tick(*frames)
    state = feed.det.state()
    state.arrays["values_key_of_id"] = state.arrays["values_key_of_id"] + 10_000
    with pytest.raises(ValueError, match="ledger: series ids"):
        SignatureDetector().restore(state)


def test_a_state_naming_a_name_it_does_not_hold_is_refused():
    feed = Feed()
    for frames in _mid_fault_ticks()[:2]:
        feed.tick(*frames)
    state = feed.det.state()
    state.meta["names"] = state.meta["names"][:1]
    with pytest.raises(ValueError, match="are not numbers into the 1 names"):
        SignatureDetector().restore(state)
