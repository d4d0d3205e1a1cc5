"""``gpuwarden inventory``: what a running ``gpuwarden serve`` knows of the fleet (nodes, racks, workloads and
the GPUs they hold), as correlation and priority use it, over the HTTP API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from gpuwarden.cli.consoles import console, err_console, folded, print_error
from gpuwarden.cli.incidents_cmd import (
    EXPORT_OUTPUTS,
    TABLE_OUTPUTS,
    UrlOption,
    add_request_options,
    api_json,
    gpuwarden_answers,
    output_option,
)
from gpuwarden.cli.listings import say_none_found
from gpuwarden.cli.output_file import STDOUT, check_writable, write_whole, writes_stdout
from gpuwarden.cli.tables import print_table
from gpuwarden.clock import shown_text
from gpuwarden.errors import InputError
from gpuwarden.printable import escape_controls, escape_controls_in

inventory_app = typer.Typer(
    help="The inventory of a running `gpuwarden serve`: nodes, racks, workloads and their GPUs.",
    no_args_is_help=True,
)
add_request_options(inventory_app)


def _fetch(url: str) -> dict[str, Any]:
    data: dict[str, Any] = api_json("GET", url, "/api/v1/inventory", dict)
    return data


def _about(data: dict[str, Any], *, stale_only: bool = False) -> None:
    """``source: slurm, read T`` on stderr, with each stale source's failure and last read; ``stale_only``
    (``-o json``) says it only when one is stale: the list cannot say its data may be old without changing
    its shape, and a script read a list that a failing source had left hours old without a word."""
    about = data.get("about", {})
    line = f"source: {about.get('source') or 'unknown'}, read {shown_text(str(about.get('read_at')))}"
    stale = [part for part in about.get("refreshed_sources", []) if part.get("stale")]
    for part in stale:
        last = f"last read {shown_text(part['read_at'])}" if part.get("read_at") else "never read"
        if part.get("failed_at"):
            line += f"; {part['name']}: failed at {shown_text(part['failed_at'])}, {last}"
        else:  # its first read still runs (serve just started): it did not fail, it is not in the list yet
            line += f"; {part['name']}: not read yet"
    if stale or not stale_only:
        err_console.print(line, markup=False, highlight=False)


def _answered_without_table(
    data: dict[str, Any],
    items: list[dict[str, Any]],
    output: str,
    what: str,
    filters: dict[str, object | None],
) -> bool:
    """``-o json``: the list as JSON; no items: ``No nodes found (...)``; either with the sources' line (in
    ``-o json`` only where one is stale, as below the table). False when the table is still to be shown."""
    if output == "json":
        typer.echo(json.dumps(items, indent=2))
        _about(data, stale_only=True)  # as below the table, where a source is stale
        return True
    if not items:
        say_none_found(what, filters)
        _about(data)
        return True
    return False


@inventory_app.command("nodes")
@gpuwarden_answers
def nodes(
    url: UrlOption = "http://127.0.0.1:8080",
    output: Annotated[str, output_option(TABLE_OUTPUTS, "table (or text) or json")] = "table",
    rack: Annotated[str | None, typer.Option(help="Only the nodes of this rack.")] = None,
) -> None:
    """Nodes with their cluster, rack, GPU count, state (as Slurm or Kubernetes says it) and free GPUs (what
    a new job could get there now; none on a node that takes no new work)."""
    data = _fetch(url)
    states = {(n["cluster"], n["name"]): n for n in data.get("about", {}).get("node_states", [])}
    items = [
        {
            **n,
            **_state_of(states.get((n["cluster"], n["name"])), "state", "usable", "free_gpus", "partitions"),
        }
        for n in data["nodes"]
        if rack is None or n["rack"] == rack
    ]
    if _answered_without_table(data, items, output, "nodes", {"rack": rack}):
        return
    items = escape_controls_in(items)  # names from a file or Kubernetes: an ESC sequence is shown, not obeyed
    table = Table(*folded("node", "cluster", "rack", "gpus", "state", "free"))  # a name folded, never cut
    for n in items:
        free = "-" if n.get("free_gpus") is None else str(n["free_gpus"])
        table.add_row(n["name"], n["cluster"], n["rack"], str(n["gpus"]), n.get("state") or "-", free)
    print_table(console, table)  # names are data, not markup
    spare = ", ".join(f"{cluster} {count}" for cluster, count in sorted(data.get("spare_gpus", {}).items()))
    spare = escape_controls(spare)
    err_console.print(f"{len(items)} nodes; spare GPUs: {spare or 'unknown'}", markup=False, highlight=False)
    _about(data)


@inventory_app.command("workloads")
@gpuwarden_answers
def workloads(
    url: UrlOption = "http://127.0.0.1:8080",
    output: Annotated[str, output_option(TABLE_OUTPUTS, "table (or text) or json")] = "table",
    node: Annotated[str | None, typer.Option(help="Only the workloads with a GPU on this node.")] = None,
) -> None:
    """Workloads (inference services, training jobs, pods) with their units and the GPUs they hold."""
    data = _fetch(url)
    states = {
        (w["kind"], w["namespace"], w["name"], w["cluster"]): w
        for w in data.get("about", {}).get("workload_states", [])
    }
    items = [
        {
            **w,
            **_state_of(
                states.get((w["kind"], w["namespace"], w["name"], w.get("cluster", ""))),
                "state",
                "kept_units",
                "gpus_held",
            ),
        }
        for w in data["workloads"]
        if node is None or any(g.rpartition(":")[0] == node for unit in w["units"] for g in unit)
    ]
    if _answered_without_table(data, items, output, "workloads", {"node": node}):
        return
    items = escape_controls_in(items)  # as the nodes' names
    table = Table(
        *folded("kind", "cluster", "namespace", "name", "state", "units", "gpus", "nodes", "also known as")
    )
    for w in items:
        gpus = {g for unit in w["units"] for g in unit}
        hosts = sorted({g.rpartition(":")[0] for g in gpus})
        shown = ", ".join(hosts[:4]) + (f" (+{len(hosts) - 4})" if len(hosts) > 4 else "")
        table.add_row(
            w["kind"],
            w.get("cluster") or "-",
            w["namespace"] or "-",
            w["name"],
            _workload_state(w),
            str(len(w["units"])),
            str(w.get("gpus_held", len(gpus))),
            shown,
            ", ".join(w.get("aliases", [])),
        )
    print_table(console, table)  # names are data, not markup
    err_console.print(f"{len(items)} workloads", markup=False, highlight=False)
    _about(data)


def _state_of(state: dict[str, Any] | None, *keys: str) -> dict[str, Any]:
    """These fields of a node's or workload's state as the API reports it (none from an older serve)."""
    return {k: state[k] for k in keys if k in state} if state is not None else {}


def _workload_state(w: dict[str, Any]) -> str:
    """``running``, ``kept (node_fail)`` (stopped abnormally, kept a while), ``running, 1 unit kept``."""
    state, kept = w.get("state") or "-", w.get("kept_units", 0)
    if kept and kept >= len(w["units"]):
        return f"kept ({state})" if state != "stopped" else "kept"
    return f"{state}, {kept} unit{'s' if kept != 1 else ''} kept" if kept else state


@inventory_app.command("export")
@gpuwarden_answers
def export(
    url: UrlOption = "http://127.0.0.1:8080",
    output: Annotated[
        str, output_option(EXPORT_OUTPUTS, "yaml or json; `alerting.inventory_file` reads both.")
    ] = "yaml",
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="Write it to FILE, replacing the file only once the export is complete (not on stdout).",
        ),
    ] = None,
) -> None:
    """Print the inventory as an inventory file (YAML by default) that `alerting.inventory_file` reads: a
    snapshot of what Slurm or Kubernetes said, to replay incidents or test rules offline.

    With `--file` a failed export (serve unreachable) leaves the file as it was: `> FILE` empties it
    before the command starts."""
    if file is not None and str(file) != STDOUT:
        try:
            check_writable(file, "--file")
        except InputError as exc:  # a file it cannot use, as `anomaly score --output` says it: exit 1
            print_error(exc)
            raise typer.Exit(1) from exc
    data = _fetch(url)
    _about(data)
    data.pop("about", None)
    if output == "json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        import yaml  # noqa: PLC0415 - only this command writes YAML

        text = yaml.safe_dump(data, sort_keys=False)
    if file is None or writes_stdout(file):
        typer.echo(text, nl=False)
        return

    def write(path: Path) -> None:
        path.write_text(text, encoding="utf-8")

    try:
        write_whole(file, write, "--file")
    except InputError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    err_console.print(f"{file}: {len(data.get('nodes', []))} nodes", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``inventory`` group to the root app."""
    app.add_typer(inventory_app, name="inventory")
