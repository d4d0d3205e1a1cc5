"""``gpuwarden outbox``: the notifications a running ``serve`` holds, and queueing failed ones again."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from gpuwarden.cli.consoles import console, err_console
from gpuwarden.cli.incidents_cmd import TABLE_OUTPUTS, UrlOption, api_json, check_output, gpuwarden_answers
from gpuwarden.printable import escape_controls_in

outbox_app = typer.Typer(
    help="Notifications (Slack) a running `gpuwarden serve` holds: waiting, sent, failed.",
    no_args_is_help=True,
)
STATUSES = ("pending", "sending", "sent", "failed", "orphaned")


@outbox_app.command("list")
@gpuwarden_answers
def list_messages(
    url: UrlOption = "http://127.0.0.1:8080",
    status: Annotated[
        str | None, typer.Option(help="Only this status: pending, sending, sent, failed, orphaned.")
    ] = None,
    incident: Annotated[str | None, typer.Option(help="Only this incident's messages.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, the newest.", min=1, max=1_000_000)] = 100,
    output: Annotated[str, typer.Option("--output", "-o", help="table (or text) or json")] = "table",
) -> None:
    """Count messages by status and list the newest, with why each failed one failed."""
    check_output(output, TABLE_OUTPUTS)
    if status is not None and status not in STATUSES:
        err_console.print(f"[red]error:[/red] --status {escape(status)!r}: use one of {', '.join(STATUSES)}")
        raise typer.Exit(1)
    params: dict[str, str | int] = {"limit": limit}
    if status is not None:
        params["status"] = status
    if incident is not None:
        params["incident"] = incident
    data: dict[str, Any] = api_json("GET", url, "/api/v1/outbox", dict, params=params)
    if output == "json":
        typer.echo(json.dumps(data, indent=2))
        return
    data = escape_controls_in(data)  # a receiver's error text: shown, never obeyed by the terminal
    counts = data["counts"]
    console.print(", ".join(f"{s} {counts.get(s, 0)}" for s in STATUSES))
    table = Table("id", "notifier", "incident", "event", "status", "attempts")
    table.add_column("last error", overflow="fold")  # why it failed: the one column never cut short
    for m in data["messages"]:
        table.add_row(
            str(m["id"]),
            escape(m["notifier"]),
            escape(m["incident_id"]),
            escape(m.get("event", "")),
            m["status"],
            str(m["attempts"]),
            escape(m["last_error"] or ""),
        )
    console.print(table)
    if counts.get("failed"):
        err_console.print("failed messages wait for `gpuwarden outbox retry` once the cause is fixed")
    if counts.get("orphaned"):
        err_console.print(
            "orphaned messages were waiting for a notifier no longer configured: kept, outside the backlog;"
            " they go out if a notifier of that name is configured again"
        )


@outbox_app.command("retry")
@gpuwarden_answers
def retry(
    url: UrlOption = "http://127.0.0.1:8080",
    incident: Annotated[str | None, typer.Option(help="Only this incident's failed messages.")] = None,
) -> None:
    """Queue failed messages again (after fixing the Slack token, scopes or channel)."""
    body = {} if incident is None else {"incident": incident}
    data: dict[str, Any] = api_json("POST", url, "/api/v1/outbox/retry", dict, json=body)
    console.print(f"queued again: {data['requeued']}")
    if data["overtaken"]:
        err_console.print(
            f"{data['overtaken']} failed messages stay failed: a later message of their incident was sent, "
            "and sending them now would set its Slack message back to what it said then"
        )


def register(app: typer.Typer) -> None:
    """Add the ``outbox`` group to the root app."""
    app.add_typer(outbox_app, name="outbox")
