"""How the timeline names an alert (``member.describe``): two alerts on one GPU are never named alike."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from alerting import scenarios as sc
from alerting.faults import classify
from alerting.member import Member, describe, recommended_by, recommended_by_alerts
from alerting.topology import locate
from gpuwarden.model import Alert, AlertStatus
from tests.alerting.announcing_serve import _served
from tests.alerting.arrival_streams import START

NODE = sc.node_name(1, 1)
GPU = {"Hostname": NODE, "gpu": "5", "UUID": sc.gpu_uuid(NODE, 5), "cluster": sc.CLUSTER}


def _anomaly(metric: str, detector: str) -> Alert:
    """The anomaly service's generic alert: its series in ``for``, its detector in ``model``."""
    labels = {**GPU, "alertname": "GpuwardenAnomaly", "for": metric, "model": detector}
    return Alert(labels, starts_at=START)


def test_two_anomaly_alerts_on_one_gpu_resolving_are_each_told_not_folded_as_a_cycle(tmp_path: Path) -> None:
    # The demo's thermal incident: its alerts on node-03 GPU 5 were all "GpuwardenAnomaly (node-03, 5)", so
    # the second one to resolve read as a repeat of the first's resolution: no reply, and the message said
    # "cycling: repeating in the last hour" of an incident that never cycled.
    hot = _anomaly("DCGM_FI_DEV_GPU_TEMP", "thermal")
    peers, band = _anomaly("DCGM_FI_DEV_GPU_TEMP", "fleet"), _anomaly("DCGM_FI_DEV_GPU_TEMP", "adaptive")
    with _served(tmp_path, [hot, peers, band]) as (engine, outbox, recorder, hook):
        engine.ingest([hot, peers, band])
        for alert in (peers, band):  # two detectors calm down; one still sees it hot
            engine.clock.advance(60)  # type: ignore[attr-defined]
            engine.ingest([replace(alert, status=AlertStatus.RESOLVED)])
            engine.tick()
            outbox.dispatch_due()
        hook.close()
        (parent,) = recorder.channel_messages()
        resolved = [r.text for r in recorder.replies(parent.ts) if r.event == "alert_resolved"]
        assert len(resolved) == 2 and resolved[0] != resolved[1]
        assert "cycling" not in str(parent.attachments)
        assert all(p["event"]["folded"] is None for p in recorder.hook_posts("oncall"))


def test_an_anomaly_alert_is_named_by_its_series_and_detector() -> None:
    temp = describe({**GPU, "alertname": "GpuwardenAnomaly", "for": "DCGM_FI_DEV_GPU_TEMP", "model": "fleet"})
    assert temp.startswith("GpuwardenAnomaly on DCGM_FI_DEV_GPU_TEMP [fleet] (")
    # An alert whose name says what broke keeps its short name, whatever detector raised it.
    lost = describe({**GPU, "alertname": "GpuLost", "for": "gpuwarden_gpu_up", "model": "signatures"})
    assert lost == f"GpuLost ({NODE}, 5)"


def test_an_xid_alert_says_which_xid() -> None:
    # The demo's GPU falling off the bus read "GpuXidError (node-02, 3)" everywhere: XID 13 (the
    # application's) and XID 79 (the GPU lost) were named alike.
    assert describe({**GPU, "alertname": "GpuXidError", "xid": "79"}) == f"GpuXidError XID 79 ({NODE}, 5)"
    assert describe({**GPU, "alertname": "GPUXid", "xid_code": "13"}) == f"GPUXid XID 13 ({NODE}, 5)"
    # A name that already says the code does not say it twice; an alert without one is named as before.
    assert (
        describe({**GPU, "alertname": "Xid79GpuFellOffBus", "xid": "79"}) == f"Xid79GpuFellOffBus ({NODE}, 5)"
    )
    assert describe({**GPU, "alertname": "GPUXid"}) == f"GPUXid ({NODE}, 5)"


def test_a_job_or_service_is_named_as_one_a_service_with_its_namespace() -> None:
    # The demo's postmortem read "GpuXidError XID 79 (node-02, 3, 8171)": 8171 is the Slurm job on the GPU,
    # and a bare service name did not say which namespace's Service it is.
    job = describe({**GPU, "alertname": "GpuXidError", "xid": "79", "slurm_job": "8171"})
    assert job == f"GpuXidError XID 79 ({NODE}, 5, Slurm job 8171)"
    served = {"alertname": "HighErrorRate", "service": "llama", "namespace": "prod", "job": "vllm"}
    assert describe(served) == "HighErrorRate (service prod/llama)"  # `job`: the server's scrape job
    assert describe({"alertname": "HighErrorRate", "service": "llama"}) == "HighErrorRate (service llama)"


SCRAPED = {
    "instance": "10.0.0.1:9400",
    "job": "dcgm-exporter",
}  # what Prometheus adds to dcgm-exporter's series


@pytest.mark.parametrize(
    ("labels", "described"),
    [
        (
            {
                **GPU,
                **SCRAPED,
                "alertname": "GpuwardenAnomaly",
                "for": "DCGM_FI_DEV_GPU_TEMP",
                "model": "thermal",
            },
            f"GpuwardenAnomaly on DCGM_FI_DEV_GPU_TEMP [thermal] ({NODE}, 10.0.0.1:9400, 5)",
        ),
        (
            {**GPU, **SCRAPED, "alertname": "GpuTempHigh", "pod": "llm-chat-5", "namespace": "prod"},
            f"GpuTempHigh ({NODE}, 10.0.0.1:9400, 5, pod prod/llm-chat-5)",
        ),
        (
            {
                **SCRAPED,
                "alertname": "GpuTempHigh",
                "UUID": "GPU-1",
                "exported_pod": "a",
                "exported_namespace": "b",
            },
            "GpuTempHigh (10.0.0.1:9400, GPU-1, pod b/a)",
        ),
        # node-exporter's `nodename` places the alert on its node, as correlation places it: the timeline
        # named the scrape job instead ("(10.0.0.1:9100, job node-exporter)") and not the node.
        (
            {
                "alertname": "NodeDiskFull",
                "nodename": NODE,
                "instance": "10.0.0.1:9100",
                "job": "node-exporter",
            },
            f"NodeDiskFull ({NODE}, 10.0.0.1:9100)",
        ),
        # Two labels naming one node (kube-prometheus' `node` beside node_uname_info's `nodename`, or
        # dcgm-exporter's `Hostname` beside `hostname`) name it once: it read "(r07-n01, r07-n01, ...)".
        (
            {"alertname": "NodeDiskFull", "node": NODE, "nodename": NODE, "instance": "10.0.0.1:9100"},
            f"NodeDiskFull ({NODE}, 10.0.0.1:9100)",
        ),
        ({**GPU, "hostname": NODE, "alertname": "GpuTempHigh"}, f"GpuTempHigh ({NODE}, 5)"),
        # The scrape job is all that says which target is down; a training job's stall is the job's.
        ({**SCRAPED, "alertname": "TargetDown"}, "TargetDown (10.0.0.1:9400, job dcgm-exporter)"),
        # A node's outage names the node in `instance`; its scrape job read as the node's job: "(r07-n01:9100,
        # job node)" in every NodeDown incident's timeline.
        (
            {"alertname": "NodeDown", "instance": f"{NODE}:9100", "job": "node"},
            f"NodeDown ({NODE}:9100)",
        ),
        (
            {"alertname": "TrainingJobStalled", "job": "llm-70b", "node": NODE},
            f"TrainingJobStalled ({NODE}, job llm-70b)",
        ),
        # `training_job` places the alert (its scrape job is left out): it is named, or nothing would be.
        (
            {"alertname": "NcclTimeout", "job": "pytorch-metrics", "training_job": "llm-70b"},
            "NcclTimeout (training job llm-70b)",
        ),
        (
            {"alertname": "TrainingJobStalled", "job": "llm-70b", "training_job": "llm-70b"},
            "TrainingJobStalled (job llm-70b)",
        ),
    ],
    ids=[
        "anomaly-over-promql",
        "rule-with-pod",
        "exported-pod",
        "node-exporter-nodename",
        "node-and-nodename-alike",
        "hostname-twice",
        "target-down",
        "node-down-by-instance",
        "job-stalled",
        "training-job",
        "training-job-is-job",
    ],
)
def test_an_alert_is_named_by_its_gpu_and_workload_not_its_scrape_job(
    labels: dict[str, str], described: str
) -> None:
    # `gpuwarden incidents show`, the Slack thread and the postmortem read "GpuTempHigh (node-01,
    # 10.0.0.1:9400, 3, job dcgm-exporter)": the exporter's scrape job, not the pod the labels named.
    assert describe(labels) == described


def _firing(recommended: str, **labels: str) -> Member:
    kind = classify(labels)
    return Member(
        labels["alertname"], kind, locate(labels, kind), START, True, labels, recommended_action=recommended
    )


@pytest.mark.parametrize(
    ("xid", "recommended", "advice"),
    [
        (
            "79",
            "restart_node",
            ("restart_node", "contact_support"),
        ),  # the catalog: RESTART_BM, CONTACT_SUPPORT
        (
            "119",
            "drain_and_reset",
            ("drain_and_reset",),
        ),  # its follow-up is INVESTIGATE_SW: no action of ours
        ("92", "ignore", ()),  # informational: ignored, so its CONTACT_SUPPORT follow-up is not advice either
        # The catalog's CONTACT_SUPPORT follow-up of a fault cleared without a reboot is for one that recurs:
        # a copy-engine exception (RESTART_APP) or a GPU reset is not a case for NVIDIA at its first alert.
        ("39", "restart_app", ("restart_app",)),
        ("46", "drain_and_reset", ("drain_and_reset",)),
        # An XID 79 alert its rule annotates `recommended_action: ignore` (a drill, a known-bad slot): the
        # incident advised "contact NVIDIA support" alone, for an alert the operator said to ignore.
        ("79", "ignore", ()),
    ],
    ids=["fell-off-the-bus", "gsp-timeout", "informational", "copy-engine", "gpu-timeout", "ignored-79"],
)
def test_an_xid_incident_recommends_the_catalogs_follow_up_after_its_immediate_action(
    xid: str, recommended: str, advice: tuple[str, ...]
) -> None:
    # XID 79's CONTACT_SUPPORT (the catalog's investigatory action) was shown nowhere: the incident advised
    # only the reboot, and a GPU that keeps falling off the bus is a case for NVIDIA.
    alert = _firing(recommended, **GPU, alertname="GpuXidError", xid=xid)
    assert recommended_by([alert]) == advice


@pytest.mark.parametrize(
    ("labels", "recommended", "advice"),
    [
        # node-exporter's NodeDown, from a Prometheus rule, carries no recommended_action: the incident of a
        # dead node recommended nothing, where the anomaly service's NodeDown recommends the reboot.
        ({"alertname": "NodeDown", "instance": f"{NODE}:9100", "job": "node"}, "none", ("restart_node",)),
        ({"alertname": "NodeDown", "node": NODE}, "none", ("restart_node",)),
        # The rule's own advice wins, and one it says to ignore is ignored.
        ({"alertname": "NodeDown", "node": NODE}, "investigate", ("investigate",)),
        ({"alertname": "NodeDown", "node": NODE}, "ignore", ()),
        # Other alerts that advise nothing still advise nothing.
        ({"alertname": "GpuTempHigh", **GPU}, "none", ()),
    ],
    ids=["node-exporter-rule", "node-label", "rule-says", "rule-ignores", "other-alert"],
)
def test_a_node_down_recommends_the_reboot_when_its_alert_says_nothing(
    labels: dict[str, str], recommended: str, advice: tuple[str, ...]
) -> None:
    assert recommended_by([_firing(recommended, **labels)]) == advice
    assert recommended_by_alerts([(labels, recommended)]) == advice  # the API's incident detail
