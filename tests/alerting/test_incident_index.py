"""The index of open incidents gives the incidents the plain scan gives.

Correlation asks the index only where an open incident could take a new alert; asking every open incident
(``OpenIncidents(full_scan=True)``) is the reference: on random alert streams, with and without an
inventory, both must open, merge, resolve and reopen the same incidents.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from alerting import scenarios as sc
from alerting.inventory import Inventory, StaticInventory
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus
from tests.alerting.index_runs import START, _engine, _run, _timeline

# (alert name, extra labels, on a GPU): what faults look like in the streams.
FAULTS: list[tuple[str, dict[str, str], bool]] = [
    ("NodeDown", {}, False),
    ("GPULost", {}, True),
    ("GPUXid", {"xid": "13"}, True),
    ("GPUXid", {"xid": "48"}, True),
    ("GPUXid", {"xid": "79"}, True),
    ("GPUXid", {"xid": "119"}, True),
    ("GPUXid", {"xid": "74"}, True),
    ("GPUNVLinkErrors", {}, True),
    ("DCGMExporterStale", {}, True),
    ("GPUTemperatureHigh", {}, True),
    ("GpuEccDbe", {}, True),
]


def _fleet_alert(rng: random.Random) -> dict[str, str]:
    """A fault on the scenario fleet (racks r05-r08: the job runs on r07 and r08), or a stalled rank."""
    if rng.random() < 0.15:
        rank = rng.randrange(128)
        return {
            "cluster": sc.CLUSTER,
            "alertname": "TrainingJobStalled",
            "slurm_job": "llm-70b",
            "rank": str(rank),
        }
    name, extra, on_gpu = rng.choice(FAULTS)
    node = sc.node_name(rng.randint(5, 8), rng.randint(1, 3))
    labels = {"cluster": sc.CLUSTER, "Hostname": node, "alertname": name, **extra}
    if on_gpu:
        gpu = rng.randrange(4)
        labels |= {"gpu": str(gpu), "UUID": sc.gpu_uuid(node, gpu)}
    return labels


def _bare_alert(rng: random.Random) -> dict[str, str]:
    """A fault with no inventory to place it: nodes with or without a cluster or rack label, and now and
    then an alert with no place at all or a job's stall."""
    roll = rng.random()
    if roll < 0.05:
        return {"alertname": rng.choice(["Watchdog", "BackupFailed"])}
    if roll < 0.12:
        return {
            "alertname": "TrainingJobStalled",
            "slurm_job": rng.choice(["j1", "j2"]),
            "rank": str(rng.randrange(4)),
        }
    name, extra, on_gpu = rng.choice(FAULTS)
    labels = {"alertname": name, "node": f"n{rng.randrange(12):02d}", **extra}
    cluster = rng.choice([None, None, "a", "b"])
    if cluster is not None:
        labels["cluster"] = cluster
        if rng.random() < 0.5:
            labels["rack"] = f"r{rng.randrange(2)}"
    if on_gpu:
        labels["gpu"] = str(rng.randrange(3))
    return labels


def _burst(rng: random.Random, make: Callable[[random.Random], dict[str, str]]) -> list[Alert]:
    """One signal on two GPUs of each of several nodes (a driver rollout, a rack's heat), shuffled: what
    rolls up to a rack or cluster, in whatever order it comes."""
    name, extra = rng.choice(
        [("GPUXid", {"xid": "119"}), ("GPUXid", {"xid": "13"}), ("GPUTemperatureHigh", {})]
    )
    alerts = []
    for _ in range(rng.randint(2, 4)):
        labels = make(rng)
        while "gpu" not in labels:
            labels = make(rng)
        node = {k: v for k, v in labels.items() if k in ("cluster", "rack", "node", "Hostname")}
        for gpu in "01":
            at = START + timedelta(seconds=rng.uniform(0, 60))
            alerts.append(Alert({**node, "alertname": name, "gpu": gpu, **extra}, starts_at=at))
    rng.shuffle(alerts)
    return alerts


def _stream(seed: int, placed: bool) -> list[tuple[str, object]]:
    """Steps of a random stream: posts of firing and resolved alerts, and ticks some minutes apart."""
    rng = random.Random(seed)
    make = _fleet_alert if placed else _bare_alert
    steps: list[tuple[str, object]] = []
    fired: list[dict[str, str]] = []
    offset = 0.0
    for _ in range(rng.randint(6, 12)):
        post = _burst(rng, make) if rng.random() < 0.3 else []
        fired.extend(dict(a.labels) for a in post)
        for _ in range(rng.randint(1, 12)):
            if fired and rng.random() < 0.15:
                post.append(Alert(rng.choice(fired), status=AlertStatus.RESOLVED))
                continue
            labels = make(rng)
            fired.append(labels)
            post.append(Alert(labels, starts_at=START + timedelta(seconds=offset + rng.uniform(0, 60))))
        steps.append(("post", post))
        step = rng.choice([10.0, 30.0, 400.0])
        offset += step
        steps.append(("advance", step))
    return steps


# Alerts with no place (what ``join_rank`` groups by name only) and node alerts, for ``_flappy_stream``.
PATHLESS = ["Watchdog", "BackupFailed", "LicenseExpiring", "CertificateExpiring", "QuotaNearlyFull"]


def _flappy_stream(seed: int) -> list[tuple[str, object]]:
    """Steps of a random stream of a few alerts fired and resolved over and over (some start flapping and
    settle), many without a place: the tick's quiet periods and flap settling, and joins by name only."""
    rng = random.Random(seed)
    pool = [
        {"alertname": name, **extra} for name in rng.sample(PATHLESS, 3) for extra in ({}, {"team": "ml"})
    ]
    pool += [{"alertname": "NodeDown", "cluster": "a", "node": f"n{k}"} for k in range(2)]
    pool.append({"alertname": "TrainingJobStalled", "slurm_job": "j1", "rank": "0"})
    firing = [False] * len(pool)
    steps: list[tuple[str, object]] = []
    offset = 0.0
    for _ in range(rng.randint(30, 50)):
        post = []
        for k in rng.sample(range(len(pool)), rng.randint(3, 6)):
            if rng.random() < 0.9:  # most change state: a flap is 6 changes in 10 minutes
                firing[k] = not firing[k]
            at = START + timedelta(seconds=offset)
            post.append(
                Alert(pool[k], starts_at=at) if firing[k] else Alert(pool[k], status=AlertStatus.RESOLVED)
            )
        steps.append(("post", post))
        step = 700.0 if rng.random() < 0.1 else rng.choice([10.0, 20.0, 30.0])  # a pause: quiet periods end
        offset += step
        steps.append(("advance", step))
    return steps


def _inventory(kind: str) -> Inventory | None:
    """The scenario fleet, the same without racks (outages of a job's nodes join by the job), or none."""
    if kind == "none":
        return None
    fleet = sc.fleet_inventory()
    if kind == "racks":
        return fleet
    nodes = [replace(n, rack="") for n in fleet.node_list]
    return StaticInventory(nodes, list(fleet.workload_list), dict(fleet.spare))


@pytest.mark.parametrize("inventory_kind", ["racks", "no racks", "none"])
@pytest.mark.parametrize("seed", range(8))
def test_the_index_gives_the_incidents_of_the_full_scan_on_random_streams(
    tmp_path: Path, seed: int, inventory_kind: str
) -> None:
    steps = _stream(seed, placed=inventory_kind != "none")
    inventory = _inventory(inventory_kind)
    indexed, clock = _engine(tmp_path, inventory, full_scan=False)
    got = _run(indexed, clock, steps, check=True)
    scanned, clock = _engine(tmp_path, inventory, full_scan=True)
    assert got == _run(scanned, clock, steps, check=False)
    assert len(got) > 1  # the stream made incidents to tell apart


@pytest.mark.parametrize("seed", range(8))
def test_the_index_gives_the_incidents_of_the_full_scan_on_streams_of_flapping_alerts_without_a_place(
    tmp_path: Path, seed: int
) -> None:
    steps = _flappy_stream(seed)
    indexed, clock = _engine(tmp_path, None, full_scan=False)
    got = _run(indexed, clock, steps, check=True)
    scanned, clock = _engine(tmp_path, None, full_scan=True)
    assert got == _run(scanned, clock, steps, check=False)
    assert len(got) > 1
    kinds = {
        e.kind for row, _ in indexed.store.list_rows(include_merged=True) for e in _timeline(indexed, row.id)
    }
    # The stream made the tick work: quiet periods, resolutions, flaps (and their settling, in most seeds).
    assert {"flapping_started", "quiet", "resolved"} <= kinds, kinds


def _flapping_nodes_stream(nodes: int) -> list[tuple[str, object]]:
    """``nodes`` nodes going down and up every 20 s, each starting 5 s after the last and stopping after its
    own number of changes (6 to 10: firing at the end, or resolved); then ticks 5 s apart past every flap
    window and quiet period: they start flapping, settle and resolve at their own ticks."""
    steps: list[tuple[str, object]] = []
    labels = [{"alertname": "NodeDown", "cluster": "a", "node": f"n{k:02d}"} for k in range(nodes)]
    changes = [6 + k % 5 for k in range(nodes)]
    for second in range(0, max(5 * k + 20 * n for k, n in enumerate(changes)) + 5, 5):
        post = []
        for k, one in enumerate(labels):
            flip, at = divmod(second - 5 * k, 20)
            if at == 0 and 0 <= flip <= changes[k]:
                post.append(
                    Alert(one, starts_at=START) if flip % 2 == 0 else Alert(one, status=AlertStatus.RESOLVED)
                )
        steps += [("post", post), ("advance", 5.0)]
    config = AlertingConfig()
    steps += [("advance", 5.0)] * (int(config.flap_window_seconds + config.quiet_period_seconds) // 5 + 12)
    return steps


def test_incidents_of_alerts_that_all_flap_settle_and_resolve_as_in_the_full_scan(tmp_path: Path) -> None:
    """The tick looks at a flapping incident only once its flap may settle: the same incidents and the same
    timelines (each flap's start and stop, each quiet period, each resolution, at the same ticks) as when
    it looks at every open incident at every tick."""
    steps = _flapping_nodes_stream(12)
    indexed, clock = _engine(tmp_path, None, full_scan=False)
    got = _run(indexed, clock, steps, check=True)
    scanned, clock = _engine(tmp_path, None, full_scan=True)
    assert got == _run(scanned, clock, steps, check=False)
    kinds = Counter(kind for *_, timeline in got for _, kind, _ in timeline)
    assert kinds["flapping_started"] == kinds["flapping_stopped"] == 12, kinds
    assert kinds["resolved"] == 5, kinds  # those whose last change was a resolution (7 or 9 changes)
