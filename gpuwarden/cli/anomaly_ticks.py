"""What ``gpuwarden anomaly run`` does at and between its ticks: one log line a tick (``TickLog``), a fixed
number of ticks (``--ticks``) or ticks on a schedule until a signal, and an alert printed as a JSON line."""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from gpuwarden.cli.logs import LogFormat
from gpuwarden.cli.startup import StartupLines
from gpuwarden.graceful import StopAsked, StopRequest
from gpuwarden.model import Alert, AlertStatus

if TYPE_CHECKING:
    from anomaly.forwarder import AlertForwarder
    from anomaly.promql import PromQLSource
    from anomaly.service import AnomalyService

# The command's logger: the tick's line reads as it did before it left ``gpuwarden.cli.anomaly_cmd``.
logger = logging.getLogger("gpuwarden.cli.anomaly_cmd")


class TickLog:
    """One log line per scoring tick, in place of a line per HTTP request: the queries read and failed,
    the alerts raised and resolved (and those re-sent after a restart, which fired before it), and what was
    sent to anomaly.alert_url (its host and port)."""

    def __init__(
        self, sources: list[PromQLSource], forwarder: AlertForwarder | None, on_alert: Callable[[Alert], None]
    ) -> None:
        self.sources = sources
        self.forwarder = forwarder
        self._on_alert = on_alert
        self.raised = 0
        self.resolved = 0
        self.resent = 0
        self._queries: dict[tuple[str, str], tuple[float | None, int]] = {}
        self._posted = 0
        # Whether the service waits to read the warm-up's history again (``anomaly.warmupretry``): a tick
        # then reads nothing, which is not "none due".
        self.warm_up_deferred: Callable[[], bool] = lambda: False

    def on_alert(self, alert: Alert) -> None:
        """The service's callback: count the alert, then print or forward it."""
        if alert.status is AlertStatus.FIRING:
            self.raised += 1
        else:
            self.resolved += 1
        self._on_alert(alert)

    def on_resend(self, alert: Alert) -> None:
        """The service's callback for an alert that fired before a restart, posted again: not raised now."""
        self.resent += 1
        self._on_alert(alert)

    def after(self) -> None:
        """After a tick: send what it raised and resolved, then log the tick's line."""
        from anomaly.promql import named  # noqa: PLC0415 (the anomaly stage loads only for its commands)

        sent = self.forwarder.flush() if self.forwarder is not None else True
        read, failed = 0, []
        for source in self.sources:
            for name, health in source.health().queries.items():
                state = (health.last_success, health.errors_total)
                before = self._queries.get((source.name, name), (None, 0))
                self._queries[source.name, name] = state
                if state == before:
                    continue  # not asked this tick (its step not due)
                # Its last read tells, not its error count: the warm-up's failures, before the first tick,
                # made a first tick that read the query well say it failed.
                if health.up:
                    read += 1
                else:
                    failed.append(name)
        line = f"tick: queries read {read}, failed {len(failed)}"
        if failed:  # the first few: an outage named every query at every tick, 700 characters a line
            line += f" ({named(failed)})"
        elif not read and self.warm_up_deferred():
            line += " (the warm-up's history read deferred: nothing is read until it is read again)"
        elif not read:
            line += " (none due: a query's step_seconds)"
        line += f"; alerts raised {self.raised}, resolved {self.resolved}"
        if self.resent:  # after a restart, what fired before it: counted as raised, it read as a new fault
            line += f", re-sent {self.resent} (firing before the restart)"
        if self.forwarder is not None:
            line += f"; sent {self.forwarder.posted - self._posted} to {self.forwarder.receiver}"
            line += "" if sent else f" (failed, retrying next tick: {self.forwarder.last_error})"
            self._posted = self.forwarder.posted
        logger.info(line)
        self.raised = self.resolved = self.resent = 0


def _run_ticks(
    service: AnomalyService,
    ticks: int,
    after: Callable[[], object] | None,
    state: Path | None = None,
    lines: StartupLines | None = None,
) -> None:
    """A fixed number of ticks, one every infer_every_seconds (scripts, tests), the state saved to ``state``
    every state_save_seconds and after the last; exit 1 when no source could be read at any of them, so
    that a script learns that nothing was scored. A source down and that exit are said on ``lines``: log
    lines with ``--log-format json``, as the tick's own."""
    from anomaly.snapshot import save_snapshot  # noqa: PLC0415

    lines = lines or StartupLines(LogFormat.TEXT, logger)
    cfg = service.cfg
    read = False
    save_every = max(1, round(cfg.state_save_seconds / cfg.infer_every_seconds))
    for done in range(1, ticks + 1):
        service.infer()
        if after is not None:
            after()
        for source in service.sources:
            health = source.health()
            read = read or health.up
            if not health.up:
                lines.said(f"source {health.name} down: {health.last_error}")
        if done % max(1, round(cfg.fit_every_seconds / cfg.infer_every_seconds)) == 0:
            service.fit()
        if state is not None and (done % save_every == 0 or done == ticks):
            save_snapshot(state, service.snapshot())
        if done < ticks:
            service.clock.sleep(cfg.infer_every_seconds)
    if not read:
        raise lines.failed(
            f"no source could be read in {ticks} tick{'s' if ticks > 1 else ''}:"
            " nothing was scored (the lines above say why)",
            1,
        )


def _run_scheduled(
    service: AnomalyService, after: Callable[[], object] | None, state: Path | None, stop: StopRequest
) -> None:
    """fit_every / infer_every (and the state's saves to ``state``) on APScheduler until SIGINT or SIGTERM
    (``stop``, caught by the caller; one that came already stops it at once), then the state saved a last
    time."""
    from anomaly.scheduler import AnomalyScheduler  # noqa: PLC0415

    scheduler = AnomalyScheduler(service, after_infer=after, state_file=state)
    scheduler.start()
    try:
        while not stop.asked:
            with suppress(StopAsked):  # a timed wait: the main thread must return to run the signal handlers
                stop.sleep(1.0)
        # Said at once, as the servers say it: the tick in progress (a read of a slow Prometheus, a post to a
        # slow serve) is waited for below, and a log silent until the state was saved read as a run that had
        # not heard the signal.
        name = signal.Signals(stop.signum).name if stop.signum is not None else "stop signal"
        then = f", then the state is saved to {state}" if state is not None else ""
        logger.info("%s: stopping; a tick in progress ends first%s", name, then)
    finally:
        scheduler.shutdown()


def _print_alert(alert: Alert) -> None:
    typer.echo(
        json.dumps(
            {
                "status": alert.status.value,
                "labels": dict(alert.labels),
                "score": alert.score,
                "recommended_action": alert.recommended_action.value,
                "summary": alert.annotations.get("summary", ""),
            }
        )
    )
