"""Assembles the exporter: one collector and one XID watcher per NVML instance, one loop, one app.

On a real host there is one NVML instance (the ``pynvml`` module); with ``--simulate`` there is one
``SimNvml`` per simulated node, each with its own ``Hostname``. The caller (the CLI) initialises NVML,
so an init failure is reported before anything starts.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from exporters.collection import CollectionLoop
from exporters.gpm import min_rate_interval
from exporters.nvml_collector import NvmlCollector, PodAssignments, ProcessResolver
from exporters.server import create_app
from exporters.xid import XidLedger, XidWatcher
from gpuwarden.clock import Clock

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NvmlInstance:
    """An initialised NVML API (``pynvml`` or a ``SimNvml``), its host name and its attribution sources."""

    nvml: Any
    hostname: str
    resolver: ProcessResolver | None = None
    pods: PodAssignments | None = None


@dataclass
class ExporterService:
    """The running parts; ``start()`` collects once before returning so the first scrape has data."""

    loop: CollectionLoop
    watchers: list[XidWatcher]
    app: Starlette
    collectors: list[NvmlCollector] = field(default_factory=list)

    def start(self) -> None:
        """Start XID watchers, run one collection, then collect in the background from one interval on.

        Each watcher registers its GPUs on its own thread while the first collection runs; neither is waited
        for past one NVML call deadline, so a call that hangs (a GPU falling off the bus) delays serving by
        that much, not for ever."""
        for watcher in self.watchers:
            try:
                watcher.start(wait=0)  # an NVML failure there is retried by the watcher and shown in /healthz
            except Exception:  # a loop boundary: the exporter still serves metrics without XID events
                logger.exception("xid watcher failed to start")
        until = time.monotonic() + self.loop.deadline
        self.loop.run_once()
        hosts = [c.hostname for c in self.collectors] or [""] * len(self.watchers)
        for host, watcher in zip(hosts, self.watchers, strict=False):
            if not watcher.wait_registered(max(0.0, until - time.monotonic())):
                logger.warning(
                    "xid watcher still registering gpus after %g s, an NVML call hangs; serving meanwhile"
                    " host=%s",
                    self.loop.deadline,
                    host,
                )
        logger.info("%s", found_line(self.collectors, self.watchers))
        # The next collection one interval later, not at once: rates need a real interval between reads.
        self.loop.start(first_after=self.loop.interval)

    def stop(self) -> None:
        """Stop the loop and the watchers."""
        # Every watcher sits in an NVML wait of up to half a second that nothing can cut short: ask them all
        # first, so their waits run out together instead of one after another.
        for watcher in self.watchers:
            watcher.request_stop()
        self.loop.stop()
        for watcher in self.watchers:
            watcher.stop()


def found_line(collectors: Sequence[NvmlCollector], watchers: Sequence[XidWatcher]) -> str:
    """The exporter's one start-up line about its GPUs: how many, of which models, on which driver, and how
    many report XID events. Per GPU it is DEBUG: a line per GPU at INFO buried the log of a big node."""
    models: Counter[str] = Counter()
    drivers: set[str] = set()
    for collector in collectors:
        counted, driver = collector.found()
        models.update(counted)
        drivers.update({driver} if driver else set())
    shown = ", ".join(f"{count} {model}" for model, count in sorted(models.items()))
    return (
        f"gpus found count={models.total()} hosts={len(collectors)} models={shown or '-'}"
        f" driver={', '.join(sorted(drivers)) or '-'} xid_watched={sum(w.registered for w in watchers)}"
    )


def build_service(
    instances: Sequence[NvmlInstance],
    *,
    clock: Clock,
    interval: float,
    deadline: float,
    pod_resources_socket: str | None = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> ExporterService:
    """Wire collectors, watchers, loop and app for the given NVML instances."""
    kubelet = None
    if pod_resources_socket:  # gRPC is loaded only by an exporter that asks the kubelet
        from exporters.podresources import PodResourcesMap  # noqa: PLC0415

        kubelet = PodResourcesMap(pod_resources_socket, clock)
    collectors, watchers = [], []
    for inst in instances:
        ledger = XidLedger()
        watcher = XidWatcher(inst.nvml, ledger, clock)
        watchers.append(watcher)
        pods = inst.pods if inst.pods is not None else kubelet
        collectors.append(
            NvmlCollector(
                inst.nvml,
                hostname=inst.hostname,
                xids=ledger,
                resolver=inst.resolver,
                pods=pods,
                watcher=watcher,
                clock=clock,
                min_rate_interval=min_rate_interval(interval),
            )
        )
    loop = CollectionLoop(collectors, clock=clock, interval=interval, deadline=deadline)
    hosts = [inst.hostname for inst in instances]
    app = create_app(loop, extra_routes=extra_routes, xid_watchers=dict(zip(hosts, watchers, strict=True)))
    return ExporterService(loop, watchers, app, collectors)
