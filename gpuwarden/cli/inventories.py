"""Where ``serve`` learns the fleet: the inventory file, the simulated fleet, Slurm and Kubernetes, merged.

``prepare_inventories`` checks every source's settings before serve makes any file; ``Inventories`` keeps the
last good read of each refreshed source.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gpuwarden.clock import SystemClock
from gpuwarden.errors import ConfigError

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import Engine

    from alerting.engine import IncidentEngine
    from alerting.inventory import StaticInventory
    from alerting.k8s_assignments import Assignment
    from alerting.k8s_inventory import KubernetesInventory
    from alerting.kept_inventory import OtherClusters
    from gpuwarden.api import BackgroundTask
    from gpuwarden.config import GpuwardenConfig, KubernetesInventoryConfig

logger = logging.getLogger("gpuwarden.serve")
KUBECONFIG_FIELD = "alerting.kubernetes_inventory.kubeconfig"


class InventorySource(Protocol):
    """A source read again every refresh (Slurm, Kubernetes)."""

    def read(self) -> StaticInventory: ...


class Inventories:
    """The inventory of every configured source, merged: fixed parts (an inventory file, the simulated
    fleet) and sources read again every refresh (Slurm, Kubernetes), each keeping its last good read."""

    def close(self) -> None:
        """Close the refreshed sources' clients (the Kubernetes API and Prometheus connections)."""
        for source, _ in self.sources:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def __init__(
        self,
        fixed: list[tuple[StaticInventory, str]],
        sources: list[tuple[InventorySource, str]],
        clock: SystemClock,
    ) -> None:
        self.fixed = fixed
        self.sources = sources
        self.clock = clock
        self.latest: dict[str, StaticInventory] = {}
        self.failing: dict[str, int] = {}  # per source, failed reads in a row
        self.relists: dict[str, int] = {}  # per source, its lists started again (``relists``) as last counted
        # The refresh reads each source in its own thread: what they record, and the merge they publish
        self._lock = threading.RLock()
        # Per refreshed source: when it was last read, and when a read last failed (the inventory API).
        self.status: dict[str, dict[str, datetime | None]] = {
            name: {"read_at": None, "failed_at": None} for _, name in sources
        }

    def keep_in(self, sql: Engine) -> None:
        """Keep what the sources keep across restarts in the incident store: Slurm's stopped jobs, the
        Kubernetes pods lost with their node, and the places of the nodes they ran on."""
        from alerting.k8s_inventory import KubernetesInventory  # noqa: PLC0415 - see prepare_inventories
        from alerting.kept_inventory import KeptInventoryStore, drop_other_clusters  # noqa: PLC0415
        from alerting.kept_jobs import KeptJobStore  # noqa: PLC0415
        from alerting.slurm_inventory import SlurmInventory  # noqa: PLC0415

        for source, name in self.sources:
            if isinstance(source, SlurmInventory):
                source.keep_in(KeptJobStore(sql), KeptInventoryStore(sql, name))
            elif isinstance(source, KubernetesInventory):
                source.keep_in(KeptInventoryStore(sql, name))
        # What a source no longer configured kept is dropped: taken back when it is configured again (weeks
        # later), its nodes as last listed then were judged gone, and their pods lost, at its first read.
        configured = {name for _, name in self.sources}
        unread: list[tuple[OtherClusters, str]] = [
            (KeptInventoryStore(sql, name), name)
            for name in ("slurm", "kubernetes")
            if name not in configured
        ]
        if "slurm" not in configured:
            unread.append((KeptJobStore(sql), "slurm"))
        for store, name in unread:
            drop_other_clusters(store, name, None)

    @property
    def name(self) -> str:
        """The sources, as the inventory API reports them."""
        return " + ".join(name for _, name in [*self.fixed, *self.sources])

    def read(self, engine: IncidentEngine | None = None) -> bool:
        """Read every source again, each in its own thread (``engine``: a refresh, whose failures it counts
        per source); whether any read worked. A source that fails keeps its last read; one that cannot be
        read when serve starts (slurmctld or the Kubernetes API down, an incident in itself) does not stop
        serve, which starts without that part and tries again. A slow source (a hung slurmctld: 10 s a
        failed read) does not hold up the others."""
        worked: list[bool] = []
        each_source(self.sources, lambda source, name: worked.append(self.read_source(source, name, engine)))
        if engine is not None:
            self.count_relists(engine)
        return any(worked)

    def read_source(self, source: InventorySource, name: str, engine: IncidentEngine | None = None) -> bool:
        """Read one source again (``engine``: a refresh, which counts its failures); whether it worked."""
        try:
            inventory = source.read()
        except Exception as exc:  # loop boundary: one source down leaves the others
            with self._lock:
                # A traceback at the first failure, then one line each until a read works again (slurmctld
                # down for an hour is not sixty tracebacks).
                again = self.failing.get(name, 0) > 0
                self.failing[name] = self.failing.get(name, 0) + 1
                self.status[name]["failed_at"] = self.clock.now()
                if engine is None:
                    logger.exception(
                        "%s inventory: cannot read it; starting without, retrying every refresh", name
                    )
                    return False
                engine.counters["inventory_refresh_failures"] += 1
                self.count_relists(engine)  # a relist that failed too: counted now, not once a read works
                if again:
                    logger.warning(
                        "%s inventory: refresh failed; keeping the last one: %s (%d failures in a row)",
                        name,
                        exc,
                        self.failing[name],
                    )
                else:
                    logger.exception("%s inventory: refresh failed; keeping the last one", name)
            return False
        with self._lock:
            self.latest[name] = inventory
            self.status[name]["read_at"] = self.clock.now()
            if self.failing.pop(name, 0):
                logger.info("%s inventory: read again after failing", name)
        return True

    def publish(self, engine: IncidentEngine) -> None:
        """Hand the engine every part as last read, merged. One at a time, so that a source's loop that
        merged before another source's newer read cannot replace the merge that holds it."""
        with self._lock:
            self.count_relists(engine)
            merged = self.merged()
            if merged is not None:
                engine.replace_inventory(merged)

    def count_relists(self, engine: IncidentEngine) -> None:
        """Add the lists each source started again since they were last counted (a Kubernetes continue token
        that expired) to ``gpuwarden_inventory_relists_total``; serve's first read, made before the engine
        exists, is counted when it does."""
        for source, name in self.sources:
            relists = int(getattr(source, "relists", 0))
            if relists > self.relists.get(name, 0):
                engine.counters["inventory_relists"] += relists - self.relists.get(name, 0)
            self.relists[name] = relists

    def merged(self) -> StaticInventory | None:
        """Every part as one inventory, in configuration order (a node two sources list is the first one's),
        or None before any part was read."""
        from alerting.inventory import merge_inventories  # noqa: PLC0415 - see prepare_inventories

        parts = [part for part, _ in self.fixed]
        parts.extend(self.latest[name] for _, name in self.sources if name in self.latest)
        return merge_inventories(parts) if parts else None


def inventory_refresh(engine: IncidentEngine, inventories: Inventories, interval: float) -> BackgroundTask:
    """Re-read each Slurm and Kubernetes inventory every ``interval``, each source in its own thread, so a
    slow one (a hung slurmctld) does not age the others' view; a failed read keeps the last one."""

    def refresh(stop: threading.Event, source: InventorySource, name: str) -> None:
        while not stop.wait(interval):
            try:
                if inventories.read_source(source, name, engine):
                    inventories.publish(engine)
            except Exception:  # loop boundary: the last inventory stays; the next refresh tries again
                engine.counters["inventory_refresh_failures"] += 1
                logger.exception("%s inventory: refresh failed; keeping the last one", name)

    def run(stop: threading.Event) -> None:
        each_source(inventories.sources, lambda source, name: refresh(stop, source, name))

    return run


def each_source(
    sources: list[tuple[InventorySource, str]], work: Callable[[InventorySource, str], object]
) -> None:
    """Run ``work`` for each (source, name), each in a thread of its own (``inventory-<name>``), until all
    have returned: a slow source holds up none of the others."""
    threads = [
        threading.Thread(target=work, args=(source, name), name=f"inventory-{name}", daemon=True)
        for source, name in sources
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def inventory_file(path: str) -> StaticInventory:
    """The inventory file ``alerting.inventory_file`` names; an error names that setting, then the file's
    line and field."""
    from alerting.inventory_file import load_inventory  # noqa: PLC0415

    try:
        return load_inventory(Path(path))
    except ConfigError as exc:  # each of the file's problems, not the first "(and 2 more problems)"
        problems = [
            ConfigError(str(problem), field="alerting.inventory_file") for problem in (exc.alone(), *exc.more)
        ]
        raise ConfigError.first_of(problems) from exc


def _kubeconfig_file(path: str) -> None:
    """The kubeconfig is a file (a ``ConfigError`` naming the setting otherwise): the client said only "No
    configuration found" for a path that is not there."""
    try:
        is_file = Path(path).is_file()
    except OSError as exc:  # a name over the system's limit: a traceback, not a refusal
        raise ConfigError(f"{path}: cannot use it: {exc.strerror}", field=KUBECONFIG_FIELD) from exc
    if not is_file:
        raise ConfigError(
            f"{path} is not a file: give a kubeconfig's path, or leave the setting out to use the pod's"
            " service account (in a cluster) or KUBECONFIG",
            field=KUBECONFIG_FIELD,
        )


def _kubeconfig_mapping(path: str) -> None:
    """A kubeconfig is a YAML mapping (clusters, users, contexts): the client fails on anything else with a
    ``TypeError`` that says nothing of the file."""
    import yaml  # noqa: PLC0415

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return  # the client's own error says what is wrong with the file
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} is not a kubeconfig: its YAML is {type(data).__name__ if data is not None else 'empty'},"
            " not a mapping of clusters, users and contexts",
            field=KUBECONFIG_FIELD,
        )


def kubernetes_inventory(
    cfg: KubernetesInventoryConfig, clock: SystemClock, *, run_plugins: bool = True
) -> KubernetesInventory:
    """The Kubernetes inventory reader: the official client from a kubeconfig or the pod's service account,
    and the exporter's GPU assignments from Prometheus when configured. ``run_plugins``: false for a check of
    the settings that is not read (serve's before its start): a kubeconfig's exec plugin is not run."""
    from kubernetes import config as kube_config  # noqa: PLC0415
    from kubernetes.client import ApiClient, Configuration, rest  # noqa: PLC0415

    from alerting.k8s_assignments import assignments_from_labels  # noqa: PLC0415
    from alerting.k8s_client import Unauthorized, Untrusted, api_lister, bound_retries  # noqa: PLC0415
    from alerting.k8s_inventory import KubernetesInventory  # noqa: PLC0415
    from gpuwarden.cli.kube_credentials import (  # noqa: PLC0415
        has_credentials,
        kubeconfig_load_errors,
        loader_errors,
        reloading_credentials,
        renewing_credentials,
        trim_token,
    )
    from gpuwarden.cli.kube_exec import bound_exec_plugins, exec_plugins_unrun  # noqa: PLC0415

    in_cluster = cfg.kubeconfig is None and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    load_errors: list[str] = []
    if cfg.kubeconfig is not None:
        _kubeconfig_file(cfg.kubeconfig)
        _kubeconfig_mapping(cfg.kubeconfig)
    bound_exec_plugins(cfg.request_timeout_seconds)  # a plugin that never answers must not hang serve
    try:
        if in_cluster:
            configuration = Configuration()
            kube_config.load_incluster_config(client_configuration=configuration)
            api_client = ApiClient(configuration)
        else:
            unrun = exec_plugins_unrun() if not run_plugins else contextlib.nullcontext()
            with unrun, loader_errors() as load_errors:  # an exec plugin that failed is only logged
                api_client = kube_config.new_client_from_config(
                    config_file=cfg.kubeconfig, context=cfg.context
                )
    except kubeconfig_load_errors() as exc:
        if in_cluster:
            message = (
                f"in a pod, but its service account cannot be used: {exc}; mount the service account token"
                " (automountServiceAccountToken), or set kubeconfig"
            )
        else:
            where = cfg.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            message = (
                f"cannot load the Kubernetes client configuration from {where}"
                f"{f' (context {cfg.context})' if cfg.context else ''}: {exc}; set kubeconfig (and context),"
                " or run serve in a pod with a service account"
            )
        raise ConfigError(message, field=KUBECONFIG_FIELD) from exc
    assignments: Callable[[], list[Assignment]] | None = None
    on_close: list[Callable[[], object]] = [api_client.close]
    if cfg.gpu_assignment_url:
        from anomaly.promql import PromQLSource, PromQuery  # noqa: PLC0415

        prometheus = PromQLSource(
            cfg.gpu_assignment_url,
            [],
            clock,
            timeout_seconds=cfg.request_timeout_seconds,
            name="gpu_assignment",
            setting="alerting.kubernetes_inventory.gpu_assignment_url",
        )
        query = PromQuery("gpu_assignment", cfg.gpu_assignment_query)

        def read_assignments() -> list[Assignment]:
            return assignments_from_labels(prometheus.query_instant(query, clock.time()).labels)

        assignments = read_assignments
        on_close.append(prometheus.close)

    trim_token(api_client.configuration)
    lister = api_lister(api_client, cfg.request_timeout_seconds)
    if not in_cluster:  # in a pod, the client reads the service account's token file again every minute

        def reload() -> None:
            kube_config.load_kube_config(
                config_file=cfg.kubeconfig,
                context=cfg.context,
                client_configuration=api_client.configuration,
                persist_config=False,
            )
            # The connections were made with the client certificate and CA read before: renewed ones need
            # new connections
            api_client.rest_client.pool_manager.clear()
            api_client.rest_client = rest.RESTClientObject(api_client.configuration)
            bound_retries(api_client)

        lister = renewing_credentials(lister, api_client.configuration, reload, (Unauthorized, Untrusted))
        if load_errors and not has_credentials(api_client.configuration):
            lister = reloading_credentials(lister, api_client.configuration, reload, failed=load_errors)
    return KubernetesInventory(
        clock,
        lister,
        cluster=cfg.cluster,
        rack_labels=cfg.rack_labels,
        gpu_resources=cfg.gpu_resources,
        assignments=assignments,
        keep_ended_seconds=cfg.keep_ended_seconds,
        on_close=on_close,
    )


def prepare_inventories(cfg: GpuwardenConfig, *, run_plugins: bool = True) -> Inventories:
    """The configured inventory sources with their settings checked (the file read, the kubeconfig
    loaded); serve calls this before it makes any lock, journal or store file, so a wrong setting changes
    nothing, with ``run_plugins`` false: a kubeconfig's exec plugin runs at the start, not at that check.
    The refreshed sources are first read later, by ``build_service``."""
    # Imported here, not at module level: every other command (--help, incidents, config) must start
    # without the engine, SQLAlchemy, alembic, Starlette and the configuration model.
    clock = SystemClock()
    fixed: list[tuple[StaticInventory, str]] = []
    sources: list[tuple[InventorySource, str]] = []
    if cfg.alerting.inventory_file:
        fixed.append((inventory_file(cfg.alerting.inventory_file), f"file {cfg.alerting.inventory_file}"))
    if cfg.alerting.sim_inventory:
        from gpuwarden.cli.sim_checks import simulated_fleet  # noqa: PLC0415
        from gpuwarden.inventory_api import inventory_from_fleet  # noqa: PLC0415
        from gpuwarden.sim.fleet import fleet_from_config  # noqa: PLC0415

        # Topology and placement only: no warm-up of every GPU's readings (15 s for 2,048 nodes).
        fleet = fleet_from_config(simulated_fleet(cfg), clock, warm_up=False)
        fixed.append((inventory_from_fleet(fleet), "sim"))
    if cfg.alerting.slurm_inventory:
        from alerting.slurm_inventory import SlurmInventory  # noqa: PLC0415

        sources.append((SlurmInventory(clock), "slurm"))
    if cfg.alerting.kubernetes_inventory is not None:
        kube = kubernetes_inventory(cfg.alerting.kubernetes_inventory, clock, run_plugins=run_plugins)
        sources.append((kube, "kubernetes"))
    return Inventories(fixed, sources, clock)
