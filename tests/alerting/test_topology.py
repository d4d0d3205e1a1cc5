from __future__ import annotations

import random
from dataclasses import replace

import pytest

from alerting import scenarios
from alerting.faults import classify
from alerting.inventory import NodeInfo, StaticInventory
from alerting.topology import UNKNOWN, Path, common_ancestor, locate
from gpuwarden.model import WorkloadKind, WorkloadRef


def _shared_prefix(paths: list[Path]) -> Path:
    """The definition: the elements every path has at each depth, from the top, until one differs or a path
    ends; an unknown rack left last is dropped."""
    prefix: list[str] = []
    for depth in range(min(len(p) for p in paths)):
        if len({p[depth] for p in paths}) > 1:
            break
        prefix.append(paths[0][depth])
    return tuple(prefix[:-1] if prefix[-1:] == [UNKNOWN] else prefix)


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        ([], ()),
        ([("c1", "r07", "n1", "3")], ("c1", "r07", "n1", "3")),
        ([("c1", "r07", "n1", "3"), ("c1", "r07", "n2", "0")], ("c1", "r07")),
        ([("c1", "r07", "n1"), ("c1", "r07", "n1", "4")], ("c1", "r07", "n1")),
        ([("c1", UNKNOWN, "n1"), ("c1", UNKNOWN, "n2")], ("c1",)),
        ([("c1", UNKNOWN, "n1", "0"), ("c1", UNKNOWN, "n1", "5")], ("c1", UNKNOWN, "n1")),
        ([("c1", "r07"), ("c2", "r07")], ()),
    ],
    ids=[
        "none",
        "one",
        "two-nodes",
        "node-and-its-gpu",
        "unknown-racks",
        "one-node-unknown-rack",
        "clusters",
    ],
)
def test_the_common_ancestor_of_paths_is_their_shared_prefix(paths: list[Path], expected: Path) -> None:
    assert common_ancestor(paths) == expected
    assert common_ancestor(reversed(paths)) == expected


@pytest.mark.parametrize("seed", range(5))
def test_the_common_ancestor_of_random_paths_is_their_shared_prefix(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(2000):
        paths = [
            tuple(
                rng.choice(values)
                for values in (["c1", "c2"], ["r1", UNKNOWN], ["n1", "n2"], ["0", "1"])[: rng.randint(1, 4)]
            )
            for _ in range(rng.randint(1, 5))
        ]
        assert common_ancestor(paths) == _shared_prefix(paths), paths


# An anomaly alert on an inference server's request latency, as `anomaly run` raises it from a series
# Prometheus scraped at the server's address (a pod IP on Kubernetes).
SLOW = {
    "alertname": "GpuwardenAnomaly",
    "for": "inference_request_duration_p99",
    "model": "adaptive",
    "deviation": "up",
    "instance": "10.1.2.3:8000",
    "job": "llama",
    "route": "/v1/chat/completions",
}
# The same summed over the server's addresses by a recording rule: only `job`, `route` and `model` are left.
AGGREGATED = {
    "alertname": "InferenceLatencyHigh",
    "job": "llama",
    "route": "/v1/chat/completions",
    "model": "llama-3-70b",
}
LLAMA = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "default", "llama", "")
ADDRESSED = StaticInventory([NodeInfo("gpu-07", "c1", "r1", 8, addresses=("10.1.2.3",))])


@pytest.mark.parametrize(
    ("labels", "inventory", "path", "workloads"),
    [
        (SLOW, None, (), {LLAMA}),
        (SLOW, scenarios.fleet_inventory(), (), {LLAMA}),
        ({**SLOW, "cluster": "c1"}, None, ("c1",), {replace(LLAMA, cluster="c1")}),
        (
            {**SLOW, "namespace": "prod", "service": "chat"},
            None,
            (),
            {replace(LLAMA, namespace="prod", name="chat")},
        ),
        ({**SLOW, "node": "gpu-07"}, None, ("", UNKNOWN, "gpu-07"), set()),
        (SLOW, ADDRESSED, ("c1", "r1", "gpu-07"), set()),
        (AGGREGATED, None, (), {LLAMA}),
        (AGGREGATED, scenarios.fleet_inventory(), (), {LLAMA}),
        ({**AGGREGATED, "cluster": "c1"}, None, ("c1",), {replace(LLAMA, cluster="c1")}),
        (
            {
                "alertname": "GpuwardenAnomaly",
                "for": "DCGM_FI_DEV_GPU_TEMP",
                "model": "fleet",
                "deviation": "up",
            }
            | {"instance": "10.0.0.1:9400", "job": "dcgm", "gpu": "3"},
            None,
            ("", UNKNOWN, "10.0.0.1", "3"),
            set(),
        ),
    ],
    ids=[
        "pod-ip-no-inventory",
        "pod-ip-unknown-to-inventory",
        "pod-ip-in-a-cluster",
        "service-label-wins",
        "node-label-is-a-node",
        "address-of-a-known-node",
        "only-job-no-inventory",
        "only-job-unknown-to-inventory",
        "only-job-in-a-cluster",
        "gpu-exporter-by-ip",
    ],
)
def test_a_service_s_requests_scraped_at_an_address_are_about_the_service_not_a_node(
    labels: dict[str, str],
    inventory: StaticInventory | None,
    path: Path,
    workloads: set[WorkloadRef],
) -> None:
    # `instance="10.1.2.3:8000"` made the incident "node 10.1.2.3 degraded": a node down or drained on
    # something that is no GPU node. The scrape job names the server; a GPU exporter's address stays its node.
    # With only `job` left (a recording rule summed the addresses away) it was "location unknown".
    where = locate(labels, classify(labels), inventory)
    assert (where.path, set(where.workloads)) == (path, workloads)
