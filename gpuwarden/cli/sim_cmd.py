"""``gpuwarden sim``: inject faults into a running simulated fleet and show a fleet's topology."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from gpuwarden.cli.consoles import console, err_console, option_said, refuse_option
from gpuwarden.cli.incidents_cmd import (
    MAX_TIMEOUT_SECONDS,
    TABLE_OUTPUTS,
    check_choice,
    checked_url,
    output_option,
)
from gpuwarden.cli.numbers import number, whole_number
from gpuwarden.clock import FakeClock
from gpuwarden.errors import InputError
from gpuwarden.numerals import AS_WRITTEN, NUMBER, TOO_LARGE, WHOLE_NUMBER, written_as_digits
from gpuwarden.redaction import hidden_password
from gpuwarden.sim import FAULT_KINDS  # light: the package loads the fleet's modules on first use
from gpuwarden.sim.faults import MAX_GPU_INDEX, MAX_NVLINK, MAX_PARAM, MAX_XID, fault_params
from gpuwarden.urls import verify_tls

sim_app = typer.Typer(
    help="Break a running simulated fleet, or show what a simulated fleet looks like.", no_args_is_help=True
)


def _param(text: str) -> tuple[str, float | str]:
    """``NAME=VALUE`` as posted: a value written as a number option writes one (``gpuwarden.numerals``) as
    that number, any other as text, which ``_params`` refuses with the exporter's own message (``'abc'``)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        _refuse_param(text, "expected NAME=VALUE such as duration=60")
    if WHOLE_NUMBER.fullmatch(value):
        return name, int(value)
    if NUMBER.fullmatch(value):
        if math.isinf(float(value)):  # JSON has no inf: json.dumps raised out of httpx
            _refuse_param(text, f"{value} is {TOO_LARGE}; write at most {MAX_PARAM:g}")
        return name, float(value)
    digits = written_as_digits(value, whole=False)
    if digits is not None:  # ' 5', '1_000': what int() reads and every number option refuses
        _refuse_param(text, f"not a number {AS_WRITTEN}; write {name}={digits}")
    return name, value


def _params(kind: str, given: list[str]) -> dict[str, float | str]:
    """Each ``--param`` of a fault of ``kind``, checked as the exporter checks it (``fault_params``), before
    posting: an unknown name or a value it refuses was its 400, exit 1, as if the exporter had failed."""
    params: dict[str, float | str] = {}
    for text in given:
        name, value = _param(text)
        if name in params:  # the last one was posted, the others dropped unsaid
            _refuse_param(text, f"{name} given twice; give it once")
        try:
            fault_params(kind, {name: value})
        except InputError as exc:
            _refuse_param(text, exc.message)
        params[name] = value
    return params


def _refuse_param(text: str, message: str) -> NoReturn:
    """``error: --param 'NAME=VALUE': what to give``, exit 2, as every bad option is said."""
    refuse_option(escape(option_said("--param", text, message)))


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@sim_app.command("inject")
def inject(
    kind: Annotated[str, typer.Argument(help=f"Fault kind: {', '.join(FAULT_KINDS)}.")],
    *,
    url: Annotated[str, typer.Option(help="Base URL of the exporter running with --simulate.")],
    node: Annotated[str | None, typer.Option(help="Target node, e.g. node-01.")] = None,
    gpu: Annotated[
        int | None, whole_number("--gpu", 0, MAX_GPU_INDEX, help="Target GPU index on the node.")
    ] = None,
    xid: Annotated[int | None, whole_number("--xid", 1, MAX_XID, help="XID code (kind xid).")] = None,
    link: Annotated[
        int | None,
        whole_number("--link", 0, MAX_NVLINK, help="NVLink index (nvlink_down, nvlink_crc_burst)."),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="Fault parameter NAME=VALUE, e.g. duration=60; repeatable.")
    ] = None,
    timeout: Annotated[
        float, number("--timeout", 0.1, MAX_TIMEOUT_SECONDS, help="HTTP timeout in seconds.")
    ] = 10.0,
) -> None:
    """POST a fault to URL/sim/faults and print the answer; exit 1 with the server's message on error."""
    # KIND in any case, as every choice of the CLI (XID is xid); an unknown one is refused before posting.
    payload: dict[str, Any] = {"kind": check_choice("KIND", kind, FAULT_KINDS)}
    for name, value in (("node", node), ("gpu", gpu), ("xid", xid), ("link", link)):
        if value is not None:
            payload[name] = value
    if param:
        payload["params"] = _params(payload["kind"], param)
    target = checked_url(url).rstrip("/") + "/sim/faults"
    shown = hidden_password(target)  # what errors name: a password or token of --url stays out
    import httpx  # noqa: PLC0415 - only this command posts

    try:
        response = httpx.post(target, json=payload, timeout=timeout, verify=verify_tls(target))
    except httpx.HTTPError as exc:
        raise _fail(f"cannot reach {shown}: {exc}; is the exporter running with --simulate?") from exc
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text.strip() or response.reason_phrase}
    if not isinstance(body, dict):
        body = {"error": response.text.strip()}
    if response.status_code == 404 and "field" not in body:
        raise _fail(f"{shown} not found; fault injection exists only when the exporter runs with --simulate")
    if response.is_error:
        raise _fail(f"{response.status_code}: {body.get('error', body)}")
    if "id" not in body:  # a 200 from something else (a proxy's page, another server)
        raise _fail(f"{shown} answered {response.status_code} but not as the simulated exporter does: {body}")
    typer.echo(json.dumps(body))


@sim_app.command("show")
def show(
    *,
    simulate: Annotated[str, typer.Option(help="NODESxGPUS, e.g. 2x8.")] = "2x8",
    seed: Annotated[int, whole_number("--seed", None, help="Seed of the simulated fleet.")] = 0,
    output: Annotated[str, output_option(TABLE_OUTPUTS, "table (or text) or json.")] = "table",
) -> None:
    """Print the topology and workloads of a simulated fleet."""
    from gpuwarden.sim import build_fleet, parse_simulate_spec  # noqa: PLC0415 - only `sim show` runs a fleet

    try:
        nodes, gpus = parse_simulate_spec(simulate)
    except InputError as exc:  # a bad option: 2, as `exporter --simulate 2y8`, and the option named once
        raise _fail(option_said("--simulate", simulate, exc.message), code=2) from exc
    fleet = build_fleet(nodes, gpus, seed=seed, clock=FakeClock())
    described = fleet.describe()
    if output == "json":
        typer.echo(json.dumps(described, indent=2))
        return
    table = Table(title=f"simulated fleet {nodes}x{gpus} (seed {seed})")
    for column in ("node", "cluster", "rack", "gpu", "uuid", "pci_bus_id", "workload"):
        table.add_column(column)
    for node in described["nodes"]:
        for g in node["gpus"]:
            table.add_row(
                node["name"], node["cluster"], node["rack"], str(g["index"]), g["uuid"], g["pci_bus_id"],
                g["workload"] or "-",
            )  # fmt: skip
    console.print(table, markup=False)  # a PCI bus id 00000000:AB:00.0 is data, not an emoji code
    for job in described["training_jobs"]:
        console.print(
            f"training job {job['namespace']}/{job['name']}: {len(job['ranks'])} ranks", markup=False
        )
    for svc in described["inference_services"]:
        console.print(
            f"inference service {svc['namespace']}/{svc['name']}: {len(svc['gpus'])} replicas", markup=False
        )


def register(app: typer.Typer) -> None:
    """Add the ``sim`` group to the root app."""
    app.add_typer(sim_app, name="sim")
