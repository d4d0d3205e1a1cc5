from datetime import UTC, datetime

import pytest

from gpuwarden.model import (
    FAULT_NAMES,
    ActionOutcome,
    ActionResult,
    Alert,
    FaultKind,
    GpuRef,
    NodeRef,
    Priority,
    RemediationRequest,
    WorkloadKind,
    WorkloadRef,
    fault_name,
    label_fingerprint,
    percent,
)


def test_fingerprint_of_empty_label_set_is_the_fnv_offset() -> None:
    # Alertmanager: the fingerprint of an empty label set is hashNew(), FNV-1a 64's offset basis.
    assert label_fingerprint({}) == "cbf29ce484222325"


def test_fingerprint_ignores_label_order_and_changes_with_values() -> None:
    a = label_fingerprint({"alertname": "GpuLost", "node": "node-01"})
    b = label_fingerprint({"node": "node-01", "alertname": "GpuLost"})
    c = label_fingerprint({"alertname": "GpuLost", "node": "node-02"})
    assert a == b
    assert a != c
    assert len(a) == 16


def test_fingerprint_separates_name_and_value_boundaries() -> None:
    # Without the 0xff separator these two label sets would hash the same bytes.
    assert label_fingerprint({"ab": "c"}) != label_fingerprint({"a": "bc"})


def test_alert_labels_cannot_change_after_creation() -> None:
    labels = {"alertname": "XidError", "gpu": "3"}
    alert = Alert(labels=labels)
    labels["gpu"] = "4"
    assert alert.labels["gpu"] == "3"
    with pytest.raises(TypeError):
        alert.labels["gpu"] = "5"  # type: ignore[index]
    assert alert.fingerprint == label_fingerprint({"alertname": "XidError", "gpu": "3"})
    assert alert.name == "XidError"


def test_priorities_sort_most_urgent_first() -> None:
    assert sorted([Priority.P3, Priority.P0, Priority.P2, Priority.P1]) == [
        Priority.P0,
        Priority.P1,
        Priority.P2,
        Priority.P3,
    ]
    assert Priority.P0.rank == 0
    assert Priority.P3.rank == 3


@pytest.mark.parametrize(
    ("target", "text"),
    [
        (NodeRef("node-01", cluster="c01", rack="r01"), "node/node-01"),
        (GpuRef("node-01", 3, "GPU-abc"), "gpu/node-01/3"),
        (WorkloadRef(WorkloadKind.TRAINING_JOB, "ml", "llm-70b"), "training_job/ml/llm-70b"),
    ],
    ids=["node", "gpu", "workload"],
)
def test_targets_render_as_kind_slash_name(target: object, text: str) -> None:
    assert str(target) == text


def test_targets_are_hashable_values() -> None:
    assert {GpuRef("n", 1), GpuRef("n", 1)} == {GpuRef("n", 1)}


def test_action_result_keeps_its_request() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    request = RemediationRequest(action="drain_node", target=NodeRef("node-01"))
    result = ActionResult(request=request, outcome=ActionOutcome.DRY_RUN, started_at=now, ended_at=now)
    assert result.request.dry_run is True
    assert result.outcome == "dry_run"


def test_every_fault_kind_has_words_and_an_unknown_one_reads_with_spaces() -> None:
    assert set(FAULT_NAMES) == set(FaultKind)
    assert fault_name("node_down") == "node down" and fault_name("ecc_dbe") == "double-bit ECC error"
    assert fault_name("psu_failed") == "psu failed"  # a newer server's kind, not an error in the CLI


@pytest.mark.parametrize(
    ("ratio", "text"),
    [
        (0.0, "0%"),
        (1.0, "100%"),
        (0.37, "37%"),
        (0.004, "0.4%"),
        (0.0004, "<0.1%"),
        (0.9951, "99.5%"),
        (0.996, "99.6%"),
        (0.9996, ">99.9%"),
        (float("nan"), "nan%"),
    ],
    ids=["none", "all", "some", "under-1%", "under-0.1%", "99.51%", "99.6%", "99.96%", "nan"],
)
def test_a_ratio_reads_as_none_or_all_only_when_it_is(ratio: float, text: str) -> None:
    # A service failing 99.6% of its requests read "error ratio 100%" (P0 "error ratio 100% > 50%"), as if
    # none answered; a ratio that is no number read "<0.1%", a small failure.
    assert percent(ratio) == text
