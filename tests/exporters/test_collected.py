"""FamilyBuilder: the samples it builds are prometheus_client's own, and its marks see what was added."""

from __future__ import annotations

from prometheus_client.samples import Sample

from exporters import fields as fams
from exporters.collected import FamilyBuilder


def test_built_samples_equal_prometheus_clients_own_with_every_default() -> None:
    out = FamilyBuilder()
    labels = {"gpu": "0", "Hostname": "node-01"}
    out.add(fams.GPU_TEMP, labels, 61)
    out.add_each(fams.CLOCK_EVENT_REASON, [({"reason": "gpu_idle"}, 1.0), ({"reason": "sync_boost"}, 0.0)])
    out.add(fams.XID_TOTAL, labels, 2.0)  # a gpuwarden counter: its samples end in _total
    samples = [s for m in out.families() for s in m.samples]
    assert samples == [
        Sample("DCGM_FI_DEV_GPU_TEMP", labels, 61),
        Sample("gpuwarden_gpu_clock_event_reason_active", {"reason": "gpu_idle"}, 1.0),
        Sample("gpuwarden_gpu_clock_event_reason_active", {"reason": "sync_boost"}, 0.0),
        Sample("gpuwarden_xid_errors_total", labels, 2.0),
    ]
    assert all(type(s) is Sample and s.timestamp is None and s.exemplar is None for s in samples)


def test_grew_says_whether_a_sample_was_added_since_the_mark_and_rollback_drops_them() -> None:
    out = FamilyBuilder()
    out.add(fams.GPU_TEMP, {"gpu": "0"}, 61)
    mark = out.mark()
    assert not out.grew(mark)
    out.add_each(fams.NVLINK_LINK_STATUS, [])  # every link read failed: a family with no sample
    assert not out.grew(mark)
    out.add_each(fams.NVLINK_LINK_STATUS, [({"gpu": "1", "link": "0"}, 1.0)])
    out.add(fams.GPU_TEMP, {"gpu": "1"}, 58)
    assert out.grew(mark)
    out.rollback(mark)
    assert [(m.name, len(m.samples)) for m in out.families()] == [("DCGM_FI_DEV_GPU_TEMP", 1)]
