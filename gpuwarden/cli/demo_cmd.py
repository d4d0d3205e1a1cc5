"""``gpuwarden demo``: the whole pipeline on a simulated fleet, with scripted faults, in under a minute.

The text and ``-o json`` tell the same story: the events as they happen (scripted faults, alerts, incidents
opened, priority changes, resolutions), the incidents at the end with their root cause, alerts and priority
history, and the postmortem draft of the first incident.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.rule import Rule
from rich.table import Table

from gpuwarden.cli.consoles import console, err_console, folded, whole_column
from gpuwarden.cli.incidents_cmd import TEXT_OUTPUTS, describe_root, output_option
from gpuwarden.cli.logs import configure_logging
from gpuwarden.cli.numbers import whole_number
from gpuwarden.cli.progress import StepProgress
from gpuwarden.cli.readers import stop_if_stdout_reader_gone
from gpuwarden.cli.stopping import stopped_as_interrupted
from gpuwarden.sim import FaultSpec

if TYPE_CHECKING:
    from gpuwarden.app import SimulatedPipeline, TickReport
    from gpuwarden.model import Incident, TimelineEvent

RULE_WIDTH = 100  # a rule as wide as a terminal, not as a pipe's unbounded console

# (minute after warm-up, what a person would say, fault)
SCENARIO: list[tuple[int, str, FaultSpec]] = [
    (0, "GPU 3 on node-02 falls off the bus (XID 79)", FaultSpec("xid", "node-02", gpu=3, xid=79)),
    (10, "GPU 5 on node-03 runs hot (thermal runaway)", FaultSpec("thermal_runaway", "node-03", gpu=5)),
    (20, "node-06 goes down", FaultSpec("node_down", "node-06")),
    (30, "repair: reset GPU 3 on node-02, reboot node-06", FaultSpec("reset_gpu", "node-02", gpu=3)),
]
REPAIRS_AT_30 = [FaultSpec("reboot_node", "node-06")]
RECOVERY_MINUTES = 20
# A simulated day: the inference replicas' daily wave once through, far past the 40 minutes the detectors
# learn normal in. The warm-up runs minute by minute: 10 million minutes ran for ever.
MAX_WARMUP_MINUTES = 24 * 60
# Timeline entries the event stream shows besides the opening: what the Slack channel hears of.
TOLD = ("resolved", "reopened")


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def root_cause_json(incident: Incident) -> dict[str, Any]:
    """The root cause as the API gives it (``incidents list -o json``)."""
    from alerting.topology import target_to_dict  # noqa: PLC0415 - a stage, loaded with the demo

    return {"kind": incident.root_cause.kind.value, "target": target_to_dict(incident.root_cause.target)}


def root_cause_text(incident: Incident) -> str:
    """``GPU lost @ gpu node-02/3``, as ``incidents list`` and ``incidents show`` write a root cause."""
    return describe_root(root_cause_json(incident))


@dataclass
class Story:
    """The demo's events as they happen: printed as text, or kept for ``-o json``."""

    pipeline: SimulatedPipeline
    quiet: bool
    events: list[dict[str, Any]] = field(default_factory=list)
    progress: StepProgress | None = None  # `-o json` at a terminal: simulated minutes done, on stderr
    _seen: dict[str, int] = field(default_factory=dict)  # timeline entries already told, per incident
    _began: datetime | None = None
    _minutes = 0

    def begin(self, minutes: int) -> None:
        """The story will last ``minutes`` of simulated time from now: the progress bar's length."""
        self._began, self._minutes = self.pipeline.clock.now(), minutes
        if self.progress is not None:
            self.progress.phase("simulated minutes", minutes)

    def passed(self, _report: TickReport | None = None) -> None:
        """After a tick: the simulated minutes done so far, on the progress bar (if any). The demo stops here
        once stdout's reader has gone (``demo | head -2``): its next line may be a minute of ticks away."""
        stop_if_stdout_reader_gone()
        if self.progress is not None and self._began is not None:
            done = (self.pipeline.clock.now() - self._began).total_seconds() // 60
            self.progress.advance(int(done), self._minutes)

    def say(self, text: str) -> None:
        """A line of narration, not an event."""
        if not self.quiet:
            console.print(text, markup=False)

    def scripted(self, text: str) -> None:
        """A scripted fault or repair."""
        self._tell({"type": "scripted", "text": text}, f">> {text}", "yellow")

    def tick(self, report: TickReport) -> None:
        """What one tick raised, then what changed in the incidents."""
        from alerting.faults import anomaly_subject, detector_of  # noqa: PLC0415 - a stage, see demo()
        from gpuwarden.app import firing  # noqa: PLC0415 - gpuwarden.app loads every stage, see demo()

        for alert in firing(report.raised):
            event: dict[str, Any] = {"type": "alert", "alertname": alert.name}
            event["node"] = alert.labels.get("Hostname") or alert.labels.get("node", "")
            # `for`: the query or metric an anomaly service alert is about; `xid`: an XID alert's code
            for label in ("gpu", "xid", "for"):
                if alert.labels.get(label):
                    event[label] = alert.labels[label]
            if anomaly_subject(alert.labels):  # a generic alert: its detector tells it from its like
                event["detector"] = detector_of(alert.labels)
            event["score"] = round(alert.score or 0.0, 1)
            where = "".join(f" {k}={event[k]}" for k in ("gpu", "xid", "for", "detector") if k in event)
            self._tell(
                event, f"alert    {alert.name:<20} {event['node']:<8}{where} score={event['score']:.1f}"
            )
        for inc in reversed(self.pipeline.incidents()):  # oldest first
            seen = self._seen.get(inc.id, 0)
            self._seen[inc.id] = len(inc.timeline)
            for entry in inc.timeline[seen:]:
                told = _incident_event(inc, entry)
                if told is not None:
                    self._tell(told[0], told[1], "bold", entry.at)
        self.passed()

    def _tell(self, event: dict[str, Any], line: str, style: str = "", at: datetime | None = None) -> None:
        when = at or self.pipeline.clock.now()
        self.events.append({"at": _iso(when), **event})
        if not self.quiet:
            console.print(f"  {when:%H:%M:%S} {line}", style=style or None, markup=False)


def _incident_event(inc: Incident, entry: TimelineEvent) -> tuple[dict[str, Any], str] | None:
    """The event (and its line) of a timeline entry the stream tells, or None."""
    head = f"incident {inc.id}"
    if entry.kind == "priority" and entry.data.get("from") is None:  # the first priority: opened
        event = {
            "type": "incident_opened",
            "incident": inc.id,
            "priority": entry.data["to"],
            "title": inc.title,
        }
        event["root_cause"] = root_cause_text(inc)
        return event, f"{head} opened {event['priority']} {inc.title}"
    if entry.kind == "priority":
        before, after, reason = entry.data["from"], entry.data["to"], entry.data.get("reason", "")
        event = {
            "type": "priority_changed",
            "incident": inc.id,
            "from": before,
            "to": after,
            "reason": reason,
        }
        return event, f"{head} {before} -> {after}: {reason}"
    if entry.kind in TOLD:
        return {
            "type": f"incident_{entry.kind}",
            "incident": inc.id,
            "text": entry.message,
        }, f"{head} {entry.message}"
    return None


def _incident_json(inc: Incident) -> dict[str, Any]:
    history = [
        {
            "at": _iso(e.at),
            "priority": e.data["to"],
            "reason": e.data.get("reason", ""),
        }
        for e in inc.timeline
        if e.kind == "priority"
    ]
    return {
        "id": inc.id,
        "priority": str(inc.priority),
        "state": str(inc.state),
        "title": inc.title,
        "root_cause": root_cause_json(inc),
        "root_cause_text": root_cause_text(inc),
        "alert_count": len(inc.alert_fingerprints),
        "priority_history": history,
    }


def _summary(incidents: list[Incident]) -> Table:
    table = Table(
        whole_column("id", (inc.id for inc in incidents)),
        *folded("priority", "state", "root cause", "alerts", "priority history", "title"),  # never cut
        title="incidents",
    )
    for inc in incidents:
        history = " -> ".join(e.data["to"] for e in inc.timeline if e.kind == "priority")
        table.add_row(
            inc.id,
            str(inc.priority),
            str(inc.state),
            root_cause_text(inc),
            str(len(inc.alert_fingerprints)),
            history,
            inc.title,
        )
    return table


def demo(
    warmup_minutes: Annotated[
        int,
        whole_number(
            "--warmup-minutes",
            0,
            MAX_WARMUP_MINUTES,
            help="Simulated minutes of normal load before faults (0: none; at most a simulated day).",
        ),
    ] = 40,
    seed: Annotated[int, whole_number("--seed", None, help="Seed of the simulated fleet.")] = 7,
    output: Annotated[
        str,
        output_option(TEXT_OUTPUTS, "text (or table, the same) or json (the same story, for scripts)."),
    ] = "text",
) -> None:
    """Run exporter -> anomaly -> incidents -> Slack on a simulated 64-GPU fleet with scripted faults."""
    # Imported here: the composition root loads every stage (scikit-learn, matplotlib, alembic, slack-sdk),
    # which the rest of the CLI must start without.
    from gpuwarden.app import build_simulated_pipeline  # noqa: PLC0415

    configure_logging(logging.ERROR)
    # SIGTERM too ends it by the clean-up: its default action left the temporary store folder behind.
    left = "the demo's temporary store is removed"
    with stopped_as_interrupted(left), tempfile.TemporaryDirectory(prefix="gpuwarden-demo-") as tmp:
        pipeline = build_simulated_pipeline(Path(tmp) / "demo.db", seed=seed)
        try:
            story = Story(pipeline, quiet=output == "json")
            # The text tells each event as it happens; JSON comes at the end: meanwhile a bar at a terminal.
            with StepProgress(err_console, quiet=not story.quiet) as progress:
                story.progress = progress
                warmup_alerts = _run(story, warmup_minutes)
            _report(story, seed=seed, warmup_minutes=warmup_minutes, warmup_alerts=warmup_alerts)
        finally:
            pipeline.close()


def _report(story: Story, *, seed: int, warmup_minutes: int, warmup_alerts: int) -> None:
    """The end of the demo: incidents, counts and the first incident's postmortem draft."""
    pipeline = story.pipeline
    incidents = pipeline.incidents()
    first = incidents[-1] if incidents else None  # newest first
    postmortem = pipeline.engine.postmortem(first.id) if first is not None else None
    messages = len(pipeline.slack.channel_messages())
    if story.quiet:
        summary = {
            "seed": seed,
            "warmup_minutes": warmup_minutes,
            "warmup_alerts": warmup_alerts,
            "gpus": sum(len(n.gpus) for n in pipeline.fleet.nodes),
            "alerts_raised": pipeline.alerts_raised,
            "alerts_resolved": pipeline.alerts_resolved,
            "events": story.events,
            "incidents": [_incident_json(i) for i in incidents],
            "slack_messages": messages,
            "slack_api_calls": len(pipeline.slack.calls),
            "postmortem": None if first is None else {"incident": first.id, "markdown": postmortem},
        }
        typer.echo(json.dumps(summary, indent=2))
        return
    console.print(_summary(incidents), markup=False)  # titles are data, not markup
    console.print(
        f"{pipeline.alerts_raised} anomaly alerts became {len(incidents)} incidents and {messages} Slack"
        f" messages (updated in place, timeline in threads; {len(pipeline.slack.calls)} Slack API calls to"
        " the local stand-in).",
        markup=False,
    )
    if first is not None:
        console.print(Rule(f"postmortem draft of {first.id}"), width=RULE_WIDTH)
        console.print(postmortem, markup=False)


def _run(story: Story, warmup_minutes: int) -> int:
    """The scripted story; the number of alerts raised during the warm-up."""
    pipeline = story.pipeline
    gpus = sum(len(n.gpus) for n in pipeline.fleet.nodes)
    story.say(
        f"gpuwarden demo: {len(pipeline.fleet.nodes)} simulated nodes, {gpus} GPUs; a simulated clock from"
        f" {pipeline.clock.now():%Y-%m-%d %H:%M} UTC, every time below is UTC"
    )
    minutes = f"{warmup_minutes} simulated minute{'' if warmup_minutes == 1 else 's'}"
    story.say(f"warming up: {minutes} of normal load, learning baselines ...")
    story.begin(warmup_minutes + SCENARIO[-1][0] + RECOVERY_MINUTES)
    pipeline.run(warmup_minutes * 60, story.passed)
    warmup_alerts = pipeline.alerts_raised
    story.say(f"warm-up done: {warmup_alerts} alert{'' if warmup_alerts == 1 else 's'} while healthy")
    story.say(
        "each alert line: name, node, labels, and score: how far the series is from normal (above 1 is"
        " anomalous, as vmanomaly's anomaly_score; 2.0: a fault signature that matched outright)"
    )
    minute = 0
    for at_minute, text, spec in SCENARIO:
        pipeline.run((at_minute - minute) * 60, story.tick)
        minute = at_minute
        story.scripted(text)
        pipeline.fleet.inject(spec)
        if spec.kind == "reset_gpu":
            for extra in REPAIRS_AT_30:
                pipeline.fleet.inject(extra)
    story.say(f"watching recovery for {RECOVERY_MINUTES} simulated minutes ...")
    pipeline.run(RECOVERY_MINUTES * 60, story.tick)
    return warmup_alerts


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to the root app."""
    app.command("demo")(demo)
