"""The ``alerting`` section of the configuration: the incident engine, its inhibition rules, maintenance
windows and inventories.

Kept apart from ``gpuwarden.config`` (the other sections and the loading), which it is a part of and which
still exports these names: it is the second largest section, and the one the alerting stage reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, model_validator

from gpuwarden.config_rules import LocalPath, PrometheusUrl, Section
from gpuwarden.limits import MAX_INTERVAL_SECONDS, MAX_RETENTION_DAYS, MAX_WINDOW_SECONDS


class InhibitRuleConfig(Section):
    """An Alertmanager inhibition rule; matchers in Alertmanager's string syntax (``name=~"v"``)."""

    name: str = ""
    source_matchers: list[str] = Field(min_length=1)
    target_matchers: list[str] = Field(min_length=1)
    equal: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)


class MaintenanceWindowConfig(Section):
    """Planned work: alerts matching the matchers are muted between the two times."""

    matchers: list[str] = Field(min_length=1)
    starts_at: datetime
    ends_at: datetime
    comment: str = ""

    @model_validator(mode="after")
    def _ends_after_start(self) -> MaintenanceWindowConfig:
        if self.starts_at.tzinfo is None or self.ends_at.tzinfo is None:
            raise ValueError("starts_at and ends_at need a timezone (2026-12-01T02:00:00Z)")
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class KubernetesInventoryConfig(Section):
    """Where the Kubernetes inventory comes from (``alerting.kubernetes_inventory``)."""

    cluster: str = Field(
        ..., min_length=1, description="the cluster's name as alerts carry it in `cluster` (the API has none)"
    )
    kubeconfig: LocalPath | None = Field(
        None,
        description="kubeconfig file; default: the pod's service account inside a cluster, else KUBECONFIG "
        "or ~/.kube/config",
    )
    context: str | None = Field(None, description="kubeconfig context; default: its current context")
    rack_labels: list[str] = Field(
        ["topology.kubernetes.io/rack", "rack"],
        description="node labels that name a node's rack; the first one a node carries wins",
    )
    gpu_resources: list[str] = Field(
        ["nvidia.com/gpu"], min_length=1, description="extended resources that are GPUs"
    )
    gpu_assignment_url: PrometheusUrl | None = Field(
        None,
        description="Prometheus-compatible API to learn which GPU each pod holds from the exporter's labels; "
        "without it, pods sharing a node are placed on every GPU of it no other pod holds",
    )
    gpu_assignment_query: str = Field(
        "group by (Hostname, gpu, UUID, namespace, pod) (DCGM_FI_DEV_FB_USED)",
        min_length=1,
        description="instant query whose series carry Hostname (node), gpu (index), UUID, namespace, pod "
        "(framebuffer use: a MIG slice's series carry its pod, in dcgm-exporter and the gpuwarden exporter)",
    )
    keep_ended_seconds: float = Field(
        3600.0,
        ge=0,
        le=MAX_WINDOW_SECONDS,
        description="how long a pod lost with its node stays placed on its GPUs",
    )
    request_timeout_seconds: float = Field(10.0, gt=0, le=MAX_INTERVAL_SECONDS)
    # Whether ``kubeconfig`` is a file is checked where serve reads it (``gpuwarden.cli.inventories``), not
    # here: every command loads this model, and the exporter, anomaly run and inference-server refused a
    # shared file whose kubeconfig is mounted in serve's pod only.


class AlertingConfig(Section):
    """The incident engine."""

    correlation_window_seconds: float = Field(300.0, gt=0, le=MAX_WINDOW_SECONDS)
    quiet_period_seconds: float = Field(300.0, ge=0, le=MAX_WINDOW_SECONDS)
    flap_window_seconds: float = Field(600.0, gt=0, le=MAX_WINDOW_SECONDS)
    flap_start_transitions: int = Field(6, ge=2)
    flap_stop_transitions: int = Field(2, ge=0)
    fold_repeats_seconds: float = Field(
        3600.0,
        ge=0,
        le=MAX_WINDOW_SECONDS,
        description="an incident going quiet or its alert firing again, as it already did this long ago with"
        " nothing else since, is told by editing its Slack message in place (counted there), not by a reply"
        " per cycle (0: a reply for every one)",
    )
    cycling_reopens_seconds: float = Field(
        3600.0,
        ge=0,
        le=MAX_WINDOW_SECONDS,
        description="an incident that already reopened this long ago or less, reopened again by the alerts"
        " that came back then, is told as cycling (a thread reply, no channel broadcast, webhook pages"
        " false), not paged; its first reopening, one by another alert, or one after this long without any"
        " pages (0: every reopening pages)",
    )
    remind_after_seconds: float = Field(
        14400.0,
        ge=0,
        le=MAX_WINDOW_SECONDS,
        description="an open incident that still fires (or a reopening held as cycling or flapping) pages"
        " again, told as a reminder, when it last paged this long ago or longer and nobody acknowledged it"
        " since (Alertmanager's repeat_interval; 0: never remind)",
    )
    assume_spare_capacity: bool = True
    priority_settle_seconds: float = Field(
        300.0,
        ge=0,
        le=MAX_INTERVAL_SECONDS,
        description="an inventory refresh lowers an incident's priority only once the lower assessment held"
        " this long; raising, and what the incident's own alerts change, is at once",
    )
    tick_interval_seconds: float = Field(5.0, gt=0, le=MAX_INTERVAL_SECONDS)
    announce_delay_seconds: float = Field(
        10.0,
        ge=0,
        le=MAX_WINDOW_SECONDS,
        description="hold a new incident back, like Alertmanager's group_wait, so that a storm's first alerts"
        " page once (0: announce at once)",
    )
    inhibit_rules: list[InhibitRuleConfig] = Field(default_factory=list)
    maintenance_windows: list[MaintenanceWindowConfig] = Field(default_factory=list)
    inventory_file: LocalPath | None = Field(
        None, description="YAML inventory: nodes, racks, workload placement"
    )
    sim_inventory: bool = Field(False, description="use the simulated fleet (sim section) as the inventory")
    slurm_inventory: bool = Field(
        False,
        description=(
            "read nodes, racks (topology/tree leaf switches) and running jobs from Slurm (scontrol, sinfo,"
            " squeue on PATH; SLURM_CONF from the environment), again every inventory_refresh_seconds"
        ),
    )
    kubernetes_inventory: KubernetesInventoryConfig | None = Field(
        None,
        description="read nodes, racks (a node label) and the pods that hold GPUs from the Kubernetes API,"
        " again every inventory_refresh_seconds",
    )
    inventory_refresh_seconds: float = Field(
        60.0,
        gt=0,
        le=MAX_INTERVAL_SECONDS,
        description="how often the Slurm or Kubernetes inventory is re-read",
    )
    journal_dir: LocalPath | None = Field(
        None,
        description="accept journal directory (default: <db>.journal for SQLite, ./gpuwarden-journal under"
        " the working directory else: set it for PostgreSQL, to a directory that outlives the process)",
    )
    applier_stall_seconds: float = Field(
        300.0,
        ge=1,
        le=MAX_INTERVAL_SECONDS,
        description="liveness (/healthz, /-/healthy) and readiness answer 503 once the journal applier has"
        " not made progress, nor waited idle or for a retry, this long, nor waited for the engine while what"
        " holds it (a tick) made progress: it is stuck and serve needs a restart (keep it above the longest"
        " batch and a PostgreSQL lock wait; a store host that stops answering costs at most"
        " store.connect_timeout_seconds per connect, about a minute on an open connection)",
    )
    reopen_window_seconds: float = Field(
        86_400.0,
        ge=0,
        le=MAX_WINDOW_SECONDS,
        description="an alert firing again this soon after its incident resolved reopens it; later, it opens "
        "a new incident",
    )
    resolve_timeout_seconds: float = Field(
        300.0,
        gt=0,
        le=MAX_WINDOW_SECONDS,
        description="an alert POSTed to /api/v2/alerts without endsAt ends this long after it was received, "
        "unless posted again (Alertmanager's global.resolve_timeout)",
    )
    retention_days: float = Field(
        90.0,
        ge=0,
        le=MAX_RETENTION_DAYS,
        description="resolved incidents, resolved alerts and ended silences older than this are deleted "
        "(checked hourly); 0 keeps everything",
    )

    @model_validator(mode="after")
    def _flap_hysteresis(self) -> AlertingConfig:
        # The engine's ``FlapPolicy`` refuses it too, but only as serve starts, with a traceback.
        if self.flap_stop_transitions >= self.flap_start_transitions:
            raise ValueError(
                f"flap_stop_transitions ({self.flap_stop_transitions}) must be below flap_start_transitions"
                f" ({self.flap_start_transitions}): an alert stops flapping only once its state changes"
                " within flap_window_seconds fall to it (the gap is the hysteresis)"
            )
        return self

    @model_validator(mode="after")
    def _one_inventory(self) -> AlertingConfig:
        others = [
            name
            for name, on in (
                ("inventory_file", bool(self.inventory_file)),
                ("slurm_inventory", self.slurm_inventory),
                ("kubernetes_inventory", self.kubernetes_inventory is not None),
            )
            if on
        ]
        if self.sim_inventory and others:
            raise ValueError(
                f"sim_inventory (the simulated fleet) cannot be combined with {' and '.join(others)}; the"
                " others combine (a Kubernetes inference cluster with a Slurm training cluster)"
            )
        return self
