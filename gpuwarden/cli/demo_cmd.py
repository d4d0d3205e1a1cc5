"""``gpuwarden demo``: the whole pipeline on a simulated fleet, with scripted faults, in under a minute."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table

from gpuwarden.cli.consoles import console
from gpuwarden.cli.incidents_cmd import check_output
from gpuwarden.sim import FaultSpec

if TYPE_CHECKING:
    from gpuwarden.app import SimulatedPipeline, TickReport

RULE_WIDTH = 100  # a rule as wide as a terminal, not as a pipe's unbounded console

# (minute after warm-up, what a person would say, fault)
SCENARIO: list[tuple[int, str, FaultSpec]] = [
    (0, "GPU 3 on node-02 falls off the bus (XID 79)", FaultSpec("xid", "node-02", gpu=3, xid=79)),
    (10, "GPU 5 on node-03 runs hot (thermal runaway)", FaultSpec("thermal_runaway", "node-03", gpu=5)),
    (20, "node-06 goes down", FaultSpec("node_down", "node-06")),
    (30, "repair: reset GPU 3 on node-02, reboot node-06", FaultSpec("reset_gpu", "node-02", gpu=3)),
]
REPAIRS_AT_30 = [FaultSpec("reboot_node", "node-06")]


def _narrate(pipeline: SimulatedPipeline, report: TickReport) -> None:
    from gpuwarden.app import firing  # noqa: PLC0415 - gpuwarden.app loads every stage, see demo()

    at = pipeline.clock.now().strftime("%H:%M:%S")
    for alert in firing(report.raised):
        where = alert.labels.get("Hostname") or alert.labels.get("node", "")
        gpu = alert.labels.get("gpu", "")
        console.print(
            f"  [dim]{at}[/dim] alert  {escape(f'{alert.name:<28} {where}')} gpu={escape(gpu)}"
            f" score={alert.score or 0:.1f}"
        )
    for incident_id in report.opened:
        inc = pipeline.engine.store.get(incident_id)
        console.print(f"  [dim]{at}[/dim] [bold]incident {inc.priority} {escape(inc.title)}[/bold]")


def _summary(pipeline: SimulatedPipeline) -> Table:
    table = Table(title="incidents")
    for col in ("id", "priority", "state", "root cause", "alerts", "title"):
        table.add_column(col)
    for inc in pipeline.incidents():
        table.add_row(
            inc.id,
            str(inc.priority),
            str(inc.state),
            f"{inc.root_cause.kind} {inc.root_cause.target}",
            str(len(inc.alert_fingerprints)),
            inc.title,
        )
    return table


def demo(
    warmup_minutes: Annotated[int, typer.Option(help="Simulated minutes of normal load before faults.")] = 40,
    seed: Annotated[int, typer.Option(help="Seed of the simulated fleet.")] = 7,
    output: Annotated[
        str, typer.Option("--output", "-o", help="text or json (the same story, for scripts).")
    ] = "text",
) -> None:
    """Run exporter -> anomaly -> incidents -> Slack on a simulated 64-GPU fleet with scripted faults."""
    check_output(output, ("text", "json"))  # before the simulation, not after it
    # Imported here: the composition root loads every stage (scikit-learn, matplotlib, alembic, slack-sdk),
    # which the rest of the CLI must start without.
    from gpuwarden.app import build_simulated_pipeline  # noqa: PLC0415

    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="gpuwarden-demo-") as tmp:
        pipeline = build_simulated_pipeline(Path(tmp) / "demo.db", seed=seed)
        try:
            _run(pipeline, warmup_minutes, quiet=output == "json")
            messages = pipeline.slack.channel_messages()
            incidents = pipeline.incidents()
            summary: dict[str, object] = {
                "gpus": sum(len(n.gpus) for n in pipeline.fleet.nodes),
                "alerts_raised": pipeline.alerts_raised,
                "alerts_resolved": pipeline.alerts_resolved,
                "incidents": [
                    {"id": i.id, "priority": str(i.priority), "state": str(i.state), "title": i.title}
                    for i in incidents
                ],
                "slack_messages": len(messages),
                "slack_api_calls": len(pipeline.slack.calls),
            }
            if output == "json":
                typer.echo(json.dumps(summary))
                return
            console.print(_summary(pipeline), markup=False)  # titles are data, not markup
            console.print(
                f"{summary['alerts_raised']} anomaly alerts became {len(incidents)} incidents and "
                f"{summary['slack_messages']} Slack messages (updated in place, timeline in threads; "
                f"{summary['slack_api_calls']} Slack API calls to the local stand-in)."
            )
            first = incidents[-1] if incidents else None
            if first is not None:
                console.print(Rule(f"postmortem draft of {first.id}"), width=RULE_WIDTH)
                console.print(pipeline.engine.postmortem(first.id), markup=False)
        finally:
            pipeline.close()


def _run(pipeline: SimulatedPipeline, warmup_minutes: int, *, quiet: bool) -> None:
    def say(text: str) -> None:
        if not quiet:
            console.print(text)

    gpus = sum(len(n.gpus) for n in pipeline.fleet.nodes)
    say(f"[bold]gpuwarden demo[/bold]: {len(pipeline.fleet.nodes)} simulated nodes, {gpus} GPUs, fake clock")
    say(f"warming up: {warmup_minutes} simulated minutes of normal load, learning baselines ...")
    pipeline.run(warmup_minutes * 60)
    say(f"warm-up done: {pipeline.alerts_raised} alerts while healthy")
    narrate = None if quiet else (lambda r: _narrate(pipeline, r))
    minute = 0
    for at_minute, text, spec in SCENARIO:
        pipeline.run((at_minute - minute) * 60, narrate)
        minute = at_minute
        say(f"[yellow]>> {text}[/yellow]")
        pipeline.fleet.inject(spec)
        if spec.kind == "reset_gpu":
            for extra in REPAIRS_AT_30:
                pipeline.fleet.inject(extra)
    say("watching recovery for 20 simulated minutes ...")
    pipeline.run(20 * 60, narrate)


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to the root app."""
    app.command("demo")(demo)
