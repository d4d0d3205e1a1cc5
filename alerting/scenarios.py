"""Alert storms for tests, the demo and the benchmark, as a GPU operator meets them.

Storms (one fault, many alerts): a rack losing power, an NVSwitch failing on one node, a bad driver
rolled out to the racks of a training job, a training job hanging everywhere at once. A single node
failure is the unrelated fault that must stay a separate incident.

The fleet is one cluster of ``racks`` racks x 8 nodes x 8 GPUs; training job ``llm-70b`` runs on racks
r07 and r08 (one rank per GPU) and inference service ``chat`` has 8 one-GPU replicas on rack r01.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from gpuwarden.model import Alert, WorkloadKind, WorkloadRef

CLUSTER = "c1"
NODES_PER_RACK = 8
GPUS_PER_NODE = 8
TRAINING_JOB = WorkloadRef(WorkloadKind.TRAINING_JOB, "research", "llm-70b", CLUSTER)
SERVICE = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "serving", "chat", CLUSTER)


def node_name(rack: int, index: int) -> str:
    """``r07-n03``."""
    return f"r{rack:02d}-n{index:02d}"


def gpu_uuid(node: str, index: int) -> str:
    """A stable fake NVML UUID."""
    return f"GPU-{node}-{index:02d}"


def fleet_inventory(racks: int = 8, spare_gpus: int = 0, job: str = "running") -> StaticInventory:
    """The scenario fleet as an inventory; ``job``: the training job ``running``, ``kept`` (stopped by a
    failure, listed a while with the GPUs it held, as a Slurm refresh keeps it) or ``gone`` (not listed)."""
    nodes = [
        NodeInfo(
            node_name(r, n),
            CLUSTER,
            f"r{r:02d}",
            GPUS_PER_NODE,
            tuple(gpu_uuid(node_name(r, n), i) for i in range(GPUS_PER_NODE)),
        )
        for r in range(1, racks + 1)
        for n in range(1, NODES_PER_RACK + 1)
    ]
    job_racks = [r for r in (7, 8) if r <= racks]
    ranks = tuple(
        frozenset({(CLUSTER, node_name(r, n), i)})
        for r in job_racks
        for n in range(1, NODES_PER_RACK + 1)
        for i in range(GPUS_PER_NODE)
    )
    replicas = tuple(frozenset({(CLUSTER, node_name(1, n), 0)}) for n in range(1, NODES_PER_RACK + 1))
    trained = {
        "running": [WorkloadInfo(TRAINING_JOB, ranks)],
        "kept": [WorkloadInfo(TRAINING_JOB, ranks, state="node_fail", kept=len(ranks))],
        "gone": [],
    }[job]
    workloads = [*trained, WorkloadInfo(SERVICE, replicas)]
    return StaticInventory(nodes, workloads, {CLUSTER: spare_gpus})


def rack_failure(
    rack: int, start: datetime, seed: int = 0, stalled_job: str | None = "llm-70b"
) -> list[Alert]:
    """Every alert a dead rack raises: node down, GPU lost, XID 79, exporter stale, job ranks stalled."""
    rng = random.Random(seed)
    alerts: list[Alert] = []

    def at(offset: float) -> datetime:
        return start + timedelta(seconds=offset + rng.random() * 20)

    for n in range(1, NODES_PER_RACK + 1):
        node = node_name(rack, n)
        base = {"cluster": CLUSTER, "severity": "critical"}
        alerts.append(
            Alert(
                {**base, "alertname": "NodeDown", "instance": f"{node}:9100", "job": "node"}, starts_at=at(5)
            )
        )
        for i in range(GPUS_PER_NODE):
            gpu = {**base, "Hostname": node, "gpu": str(i), "UUID": gpu_uuid(node, i)}
            alerts.append(Alert({**gpu, "alertname": "GPULost"}, starts_at=at(0)))
            alerts.append(Alert({**gpu, "alertname": "GPUXid", "xid": "79"}, starts_at=at(0)))
            alerts.append(
                Alert({**gpu, "alertname": "DCGMExporterStale", "severity": "warning"}, starts_at=at(30))
            )
            if stalled_job is None:
                continue
            rank = (n - 1) * GPUS_PER_NODE + i
            alerts.append(
                Alert(
                    {**base, "alertname": "TrainingJobStalled", "slurm_job": stalled_job, "rank": str(rank)},
                    starts_at=at(60),
                )
            )
    rng.shuffle(alerts)
    return alerts


def node_failure(rack: int, node_index: int, start: datetime) -> list[Alert]:
    """A single node dies: node down plus its GPUs lost."""
    node = node_name(rack, node_index)
    base = {"cluster": CLUSTER, "severity": "critical"}
    alerts = [
        Alert({**base, "alertname": "NodeDown", "instance": f"{node}:9100", "job": "node"}, starts_at=start)
    ]
    for i in range(GPUS_PER_NODE):
        alerts.append(
            Alert(
                {**base, "alertname": "GPULost", "Hostname": node, "gpu": str(i), "UUID": gpu_uuid(node, i)},
                starts_at=start,
            )
        )
    return alerts


def nvlink_switch_failure(rack: int, node_index: int, start: datetime, seed: int = 0) -> list[Alert]:
    """An NVSwitch fails on a node of the training job (rack 7 or 8): XID 74 and NVLink errors on all
    its GPUs, and the job's ranks there stall."""
    rng = random.Random(seed)
    node = node_name(rack, node_index)
    base = {"cluster": CLUSTER, "severity": "critical"}
    alerts: list[Alert] = []
    first_rank = (7, 8).index(rack) * NODES_PER_RACK * GPUS_PER_NODE  # the job's racks
    for i in range(GPUS_PER_NODE):
        gpu = {**base, "Hostname": node, "gpu": str(i), "UUID": gpu_uuid(node, i)}
        onset = start + timedelta(seconds=rng.random() * 10)
        alerts.append(Alert({**gpu, "alertname": "GPUXid", "xid": "74"}, starts_at=onset))
        alerts.append(Alert({**gpu, "alertname": "GPUNVLinkErrors", "severity": "warning"}, starts_at=onset))
        rank = first_rank + (node_index - 1) * GPUS_PER_NODE + i
        alerts.append(
            Alert(
                {**base, "alertname": "TrainingJobStalled", "slurm_job": "llm-70b", "rank": str(rank)},
                starts_at=start + timedelta(seconds=60 + rng.random() * 20),
            )
        )
    rng.shuffle(alerts)
    return alerts


def driver_rollout_xids(
    racks: tuple[int, ...], start: datetime, seed: int = 0, stalled_job: str | None = "llm-70b"
) -> list[Alert]:
    """A bad driver rolled out node by node to ``racks``: GSP timeouts (XID 119) on every GPU it reached.

    The training job on those GPUs stalls: every rank it has there raises ``TrainingJobStalled``.
    """
    rng = random.Random(seed)
    base = {"cluster": CLUSTER, "severity": "critical"}
    alerts: list[Alert] = []
    job_racks = [r for r in (7, 8) if r in racks]
    for k, rack in enumerate(racks):
        for n in range(1, NODES_PER_RACK + 1):
            node = node_name(rack, n)
            # The rollout reaches one node every 15 s; the driver fails on each GPU soon after.
            reached = start + timedelta(seconds=15 * (k * NODES_PER_RACK + n))
            for i in range(GPUS_PER_NODE):
                gpu = {**base, "Hostname": node, "gpu": str(i), "UUID": gpu_uuid(node, i)}
                onset = reached + timedelta(seconds=rng.random() * 10)
                alerts.append(Alert({**gpu, "alertname": "GPUXid", "xid": "119"}, starts_at=onset))
                if stalled_job is None or rack not in job_racks:
                    continue
                rank = job_racks.index(rack) * NODES_PER_RACK * GPUS_PER_NODE + (n - 1) * GPUS_PER_NODE + i
                alerts.append(
                    Alert(
                        {
                            **base,
                            "alertname": "TrainingJobStalled",
                            "slurm_job": stalled_job,
                            "rank": str(rank),
                        },
                        starts_at=onset + timedelta(seconds=60),
                    )
                )
    rng.shuffle(alerts)
    return alerts


def job_wide_stall(start: datetime, job: str = "llm-70b", ranks: int = 128, seed: int = 0) -> list[Alert]:
    """A training job hangs everywhere at once (a collective deadlock): every rank stalls, no GPU fault."""
    rng = random.Random(seed)
    base = {"cluster": CLUSTER, "severity": "critical", "slurm_job": job}
    alerts = [
        Alert(
            {**base, "alertname": "TrainingJobStalled", "rank": str(r)},
            starts_at=start + timedelta(seconds=rng.random() * 30),
        )
        for r in range(ranks)
    ]
    alerts += [
        Alert(
            {**base, "alertname": "TrainingStepTimeHigh", "rank": str(r)},
            starts_at=start + timedelta(seconds=rng.random() * 30),
        )
        for r in range(ranks)
    ]
    rng.shuffle(alerts)
    return alerts


def storm_scenarios(start: datetime) -> dict[str, list[Alert]]:
    """The storms the notification target is about, by name: each is one fault."""
    return {
        "rack_power_loss": rack_failure(7, start),
        "nvlink_switch_failure": nvlink_switch_failure(8, 3, start),
        "driver_rollout_xids": driver_rollout_xids((7, 8), start),
        "training_job_stall": job_wide_stall(start),
    }


def unrelated_faults(start: datetime) -> list[Alert]:
    """Two unrelated faults at once (a rack and a node elsewhere): a correctness check, not a storm."""
    return rack_failure(5, start, seed=1, stalled_job=None) + node_failure(2, 4, start)
