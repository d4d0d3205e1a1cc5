"""``gpuwarden incidents``: list, show, ack, mitigate, note, silence, postmortem, over the HTTP API."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

incidents_app = typer.Typer(help="Incidents of a running `gpuwarden serve`.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)
MAX_LIMIT = 1_000_000_000  # the API's largest ?limit= (gpuwarden.api.MAX_LIMIT; the CLI does not import it)

UrlOption = Annotated[
    str, typer.Option("--url", envvar="GPUWARDEN_URL", help="Base URL of `gpuwarden serve`.")
]


def api_request(method: str, url: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", {})
    token = os.environ.get("GPUWARDEN_API_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = httpx.request(method, url.rstrip("/") + path, headers=headers, timeout=10.0, **kwargs)
    except httpx.HTTPError as exc:
        err_console.print(f"[red]error:[/red] cannot reach {url}: {escape(str(exc))}")
        raise typer.Exit(2) from exc
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        err_console.print(f"[red]error:[/red] HTTP {response.status_code}: {escape(str(message))}")
        raise typer.Exit(1)
    return response


def check_output(output: str, allowed: tuple[str, ...]) -> None:
    if output not in allowed:
        err_console.print(f"[red]error:[/red] --output {output!r}: use one of {', '.join(allowed)}")
        raise typer.Exit(1)


def _target(target: dict[str, Any]) -> str:
    kind = target.get("type", "")
    if kind == "gpu":
        return f"gpu {target.get('node')}/{target.get('index')}"
    if kind == "workload":
        return f"{target.get('kind')} {target.get('name')}"
    return f"{kind} {target.get('name', '')}"


@incidents_app.command("list")
def list_incidents(
    url: UrlOption = "http://127.0.0.1:8080",
    output: Annotated[str, typer.Option("--output", "-o", help="table or json")] = "table",
    state: Annotated[str | None, typer.Option(help="Only this state.")] = None,
    priority: Annotated[str | None, typer.Option(help="Only this priority (P0-P3).")] = None,
    limit: Annotated[
        int, typer.Option(help="At most this many, newest first; 0 lists all.", min=0, max=MAX_LIMIT)
    ] = 50,
) -> None:
    """List incidents, newest first."""
    check_output(output, ("table", "json"))
    params: dict[str, str | int] = {
        k: v for k, v in (("state", state), ("priority", priority)) if v is not None
    }
    if limit:
        params["limit"] = limit
    response = api_request("GET", url, "/api/v1/incidents", params=params)
    items = response.json()
    if output == "json":
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table("id", "priority", "state", "root cause", "alerts", "opened", "title")
    for i in items:
        root = i["root_cause"]
        table.add_row(
            i["id"],
            i["priority"],
            i["state"],
            f"{root['kind']} @ {_target(root['target'])}",
            str(i["alert_count"]),
            i["opened_at"],
            i["title"],
        )
    console.print(table)
    total = int(response.headers.get("X-Total-Count", len(items)))
    if total > len(items):
        err_console.print(f"showing the newest {len(items)} of {total}; --limit 0 lists all")


@incidents_app.command("show")
def show(
    incident_id: str,
    url: UrlOption = "http://127.0.0.1:8080",
    output: Annotated[str, typer.Option("--output", "-o", help="text or json")] = "text",
) -> None:
    """Show one incident with its impact, recommended actions and timeline."""
    check_output(output, ("text", "json"))
    inc = api_request("GET", url, f"/api/v1/incidents/{incident_id}").json()
    if output == "json":
        typer.echo(json.dumps(inc, indent=2))
        return
    console.print(f"[bold]{inc['priority']}[/bold] {inc['title']}  ({inc['id']}, {inc['state']})")
    console.print(f"root cause: {inc['root_cause']['kind']} @ {_target(inc['root_cause']['target'])}")
    console.print(f"impact: {inc['impact']['summary'] or '-'}; alerts: {inc['alert_count']}")
    actions = sorted(
        {a.get("recommended_action") or "none" for a in inc["alerts"] if a["status"] == "firing"} - {"none"}
    )
    if actions:
        console.print(f"recommended: {', '.join(actions)}", markup=False)
    for event in inc["timeline"]:
        console.print(f"  {event['at']}  {event['kind']:<20} {event['message']}", markup=False)


ByOption = Annotated[str, typer.Option(help="Who does it (default: $USER).")]


def _act(url: str, incident_id: str, action: str, body: dict[str, str], by: str) -> dict[str, Any]:
    body = {**body, "by": by or os.environ.get("USER", "cli")}
    inc: dict[str, Any] = api_request(
        "POST", url, f"/api/v1/incidents/{incident_id}/{action}", json=body
    ).json()
    return inc


@incidents_app.command("ack")
def ack(incident_id: str, url: UrlOption = "http://127.0.0.1:8080", by: ByOption = "") -> None:
    """Acknowledge an incident (needs GPUWARDEN_API_TOKEN)."""
    inc = _act(url, incident_id, "ack", {}, by)
    typer.echo(f"{inc['id']}: {inc['state']}")


@incidents_app.command("mitigate")
def mitigate(
    incident_id: str,
    action: Annotated[str, typer.Option(help="What is being done, e.g. 'draining node r07-n03'.")],
    url: UrlOption = "http://127.0.0.1:8080",
    by: ByOption = "",
) -> None:
    """Mark an incident mitigating: someone is working on it (needs GPUWARDEN_API_TOKEN)."""
    inc = _act(url, incident_id, "mitigate", {"action": action}, by)
    typer.echo(f"{inc['id']}: {inc['state']}")


@incidents_app.command("note")
def note(
    incident_id: str,
    text: Annotated[str, typer.Argument(help="The note (timeline, Slack thread, postmortem).")],
    url: UrlOption = "http://127.0.0.1:8080",
    by: ByOption = "",
) -> None:
    """Add a note to an incident's timeline (needs GPUWARDEN_API_TOKEN)."""
    inc = _act(url, incident_id, "notes", {"text": text}, by)
    typer.echo(f"{inc['id']}: noted")


@incidents_app.command("silence")
def silence(
    incident_id: str,
    duration: Annotated[str, typer.Option("--for", help="How long: 30m, 1h, 1h30m, 2d.")] = "1h",
    url: UrlOption = "http://127.0.0.1:8080",
    by: ByOption = "",
) -> None:
    """Silence an incident's alerts for a while (needs GPUWARDEN_API_TOKEN)."""
    inc = _act(url, incident_id, "silence", {"duration": duration}, by)
    typer.echo(f"{inc['id']}: silenced for {duration}")


@incidents_app.command("postmortem")
def postmortem(incident_id: str, url: UrlOption = "http://127.0.0.1:8080") -> None:
    """Print the Markdown postmortem draft."""
    typer.echo(api_request("GET", url, f"/api/v1/incidents/{incident_id}/postmortem").text)


def register(app: typer.Typer) -> None:
    """Add the ``incidents`` group to the root app."""
    app.add_typer(incidents_app, name="incidents")
