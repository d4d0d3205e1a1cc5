"""``gpuwarden sim``: inject faults into a running simulated fleet, list and clear them, and show a fleet's
topology."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn
from urllib.parse import quote

import typer
from rich.markup import escape
from rich.table import Table

from gpuwarden.cli.consoles import (
    console,
    err_console,
    folded,
    option_said,
    print_problems,
    refuse_option,
    whole_column,
)
from gpuwarden.cli.foreign_answers import foreign_said
from gpuwarden.cli.incidents_cmd import (
    MAX_TIMEOUT_SECONDS,
    TABLE_OUTPUTS,
    check_choice,
    checked_url,
    output_option,
    written,
)
from gpuwarden.cli.listings import say_none_found
from gpuwarden.cli.numbers import number, whole_number
from gpuwarden.cli.sim_checks import mig_gpus
from gpuwarden.cli.tables import print_table
from gpuwarden.cli.tls_trust import ca_file_problem, tls_hint
from gpuwarden.clock import FakeClock, shown
from gpuwarden.errors import ConfigError, InputError
from gpuwarden.numerals import AS_WRITTEN, NUMBER, TOO_LARGE, WHOLE_NUMBER, written_as_digits
from gpuwarden.redaction import hidden_password
from gpuwarden.sim import FAULT_KINDS  # light: the package loads the fleet's modules on first use
from gpuwarden.sim.faults import (
    ALREADY_ENDED,
    MAX_GPU_INDEX,
    MAX_NVLINK,
    MAX_PARAM,
    MAX_XID,
    fault_params,
    parse_fault,
)
from gpuwarden.urls import verify_tls

if TYPE_CHECKING:
    import httpx

    from gpuwarden.config import GpuwardenConfig

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


_OPTIONS = {"kind": "KIND", "params": "--param"} | {
    name: f"--{name}" for name in ("node", "gpu", "xid", "link")
}


def _check_fault(payload: dict[str, Any]) -> None:
    """The fault checked as the exporter checks it (``parse_fault``, without its fleet), an option its kind
    needs and lacks, or does not take, refused as a bad option (exit 2) before posting: ``sim inject xid``
    without ``--xid`` exited 1 on the exporter's 400, as if the exporter had failed."""
    try:
        parse_fault(payload)
    except InputError as exc:
        option = _OPTIONS.get(exc.field, exc.field)
        message = exc.message.replace(f"remove {exc.field}", f"remove {option}")  # the exporter's word
        given = payload.get(exc.field) if exc.field in ("node", "gpu", "xid", "link") else None
        # One given that its kind does not take is named with its value, as every bad option is said.
        said = f"{option}: {message}" if given is None else option_said(option, given, message)
        refuse_option(escape(said))


def _refuse_param(text: str, message: str) -> NoReturn:
    """``error: --param 'NAME=VALUE': what to give``, exit 2, as every bad option is said."""
    refuse_option(escape(option_said("--param", text, message)))


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


# The options every command that talks to a running simulated fleet takes.
FaultsUrl = Annotated[
    str, typer.Option(help="Base URL of the exporter (or inference server) running with --simulate.")
]
FaultsTimeout = Annotated[
    float, number("--timeout", 0.1, MAX_TIMEOUT_SECONDS, help="HTTP timeout in seconds.")
]


@sim_app.command("inject")
def inject(
    kind: Annotated[str, typer.Argument(help=f"Fault kind: {', '.join(FAULT_KINDS)}.")],
    *,
    url: FaultsUrl,
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
        list[str] | None,
        typer.Option(metavar="NAME=VALUE", help="Fault parameter NAME=VALUE, e.g. duration=60; repeatable."),
    ] = None,
    timeout: FaultsTimeout = 10.0,
) -> None:
    """POST a fault to URL/sim/faults and print the answer; exit 1 with the server's message on error."""
    # KIND in any case, as every choice of the CLI (XID is xid); an unknown one is refused before posting.
    payload: dict[str, Any] = {"kind": check_choice("KIND", kind, FAULT_KINDS)}
    for name, value in (("node", node), ("gpu", gpu), ("xid", xid), ("link", link)):
        if value is not None:
            payload[name] = value
    if param:
        payload["params"] = _params(payload["kind"], param)
    _check_fault(payload)
    body = _answered(_request("POST", url, "/sim/faults", timeout, json=payload), "id", url)
    typer.echo(json.dumps(body))


# What ``sim`` talks to, named where a TLS problem is to be mended (the CLI's others talk to serve).
_EXPORTER = "the exporter"


def _request(method: str, url: str, path: str, timeout: float, **kwargs: Any) -> httpx.Response:
    """``method`` to ``url`` + ``path`` (``/sim/faults``...); exit 1 saying which exporter could not be
    reached, its password or token kept out."""
    target = checked_url(url).rstrip("/") + path
    import httpx  # noqa: PLC0415 - only the commands that talk to an exporter load it

    try:
        return httpx.request(method, target, timeout=timeout, verify=verify_tls(target), **kwargs)
    except KeyboardInterrupt:  # Ctrl-C while the exporter held a POST: still 130, but it may inject it
        if method == "POST":
            err_console.print(
                f"error: interrupted before the exporter answered{_unanswered(url)}", markup=False
            )
        raise
    except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:  # never reached: the request was not sent
        said = f"cannot reach {hidden_password(target)}: {exc}; is the exporter running with --simulate?"
        raise _fail(said) from exc
    except httpx.TimeoutException as exc:  # reached: it took the request and did not answer in time
        # Said as "cannot reach ...; is the exporter running with --simulate?": a retry injected it twice.
        said = f"timed out after {timeout:g} s waiting for an answer from {hidden_password(target)}"
        said += " (raise --timeout)"
        raise _fail(said + (_unanswered(url) if method == "POST" else "")) from exc
    except httpx.HTTPError as exc:
        shown_url = hidden_password(target)
        hint = tls_hint(target, str(exc), _EXPORTER) or "; is the exporter running with --simulate?"
        raise _fail(f"cannot reach {shown_url}: {exc}{hint}") from exc
    except OSError as exc:  # httpx loads SSL_CERT_FILE before connecting: a missing or non-PEM file raised
        problem = ca_file_problem(exc, _EXPORTER)
        if problem is None:
            raise
        raise _fail(problem, 2) from exc


def _unanswered(url: str) -> str:
    """Said of a fault posted to ``url`` (``--url``) that got no answer: the exporter may have injected it."""
    return (
        f"; the exporter may still have injected the fault: look with `gpuwarden sim faults --url"
        f" {hidden_password(url)}` before injecting it again, or it runs twice"
    )


def _answered(response: httpx.Response, key: str, url: str) -> dict[str, Any]:
    """The JSON object the simulated exporter at ``url`` (``--url``) answered ``response`` with, which
    carries ``key``; exit 1 with its message on an error, and on a page that is not its answer (a proxy's,
    another server's)."""
    shown_url = hidden_password(str(response.request.url))
    try:
        body = response.json()
    except ValueError:
        body = None
    # A 404 of no route: another server's, or serve's (``{"field": "path"}``: --url gpuwarden serve's).
    if response.status_code == 404 and (not isinstance(body, dict) or body.get("field") in (None, "path")):
        serve = isinstance(body, dict) and body.get("field") == "path"
        raise _fail(_not_found(shown_url, hidden_password(url), serve=serve))
    if response.status_code == 401 and response.headers.get("www-authenticate", "").lower().startswith(
        "basic"
    ):
        given = "a wrong password" if response.request.headers.get("authorization") else "no password"
        raise _fail(
            f"{shown_url} answered 401 to {given}: the server asks for basic auth (its --web.config.file);"
            " give the user and password in --url: https://USER:PASSWORD@HOST:PORT"
        )
    if not isinstance(body, dict) or (response.is_error and not isinstance(body.get("error"), str)):
        # Not the exporter's answer (a proxy's 502 page, another server): said with where it came from, as
        # it is ("answered 200 but not as ...: {'error': 'hello'}" showed a dict the CLI had made up).
        said = foreign_said(response.text) or response.reason_phrase
        raise _fail(
            f"{shown_url} answered {response.status_code}: {said} (not the simulated exporter's answer: is"
            " --url an exporter or inference server running with --simulate?)"
        )
    if response.is_error:  # as every other command says an HTTP refusal (`incidents`: "HTTP 404: ...")
        raise _fail(f"HTTP {response.status_code}: {body['error']}")
    if key not in body:
        raise _fail(
            f"{shown_url} answered {response.status_code} but not as the simulated exporter does: {body}"
        )
    return body


def _not_found(shown_url: str, given: str, *, serve: bool) -> str:
    """Why ``shown_url`` (under ``--url given``) has no ``/sim/faults``: ``serve``, gpuwarden serve's "no
    route" answered; else another server, or an exporter started without --simulate (both a plain 404).
    "fault injection exists only when the exporter runs with --simulate" sent the operator to restart an
    exporter where --url named another server (a Prometheus, node_exporter, a wrong port)."""
    expected = "an exporter or inference server running with --simulate, whose /sim/faults injects faults"
    port = "the exporter's default port is 9400"
    if serve:
        return f"{shown_url} answered 404: --url {given} is gpuwarden serve's API, not {expected} ({port})"
    return (
        f"{shown_url} answered 404: --url {given} is not {expected} (one started without --simulate, or"
        f" another server, answers 404 there); check --url's host and port ({port})"
    )


def _when(at: object) -> str:
    """A fault's time as the exporter gives it (seconds since the epoch) in the CLI's one format for people
    (``2026-12-02T16:00:05Z``); ``-`` where it has none."""
    if isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at):
        return shown(datetime.fromtimestamp(at, UTC))
    return "-"


def _fault_state(fault: dict[str, Any]) -> str:
    """A fault's state, as the table and ``-o json`` say it: ``active``, or once over ``ended (REASON)``."""
    if fault.get("ended_at") is None:
        return "active"
    return f"ended ({fault.get('end_reason') or 'ended'})"


def _fault_row(fault: dict[str, Any]) -> list[str]:
    """One fault as the table writes it: its id, kind, target, the XID, link and parameters it was given, when
    it began and, once over, when and why it ended."""
    given = [f"{name} {fault[name]}" for name in ("xid", "link") if fault.get(name) is not None]
    given += [f"{name}={value}" for name, value in sorted((fault.get("params") or {}).items())]
    ended = fault.get("ended_at")
    return [
        str(fault.get("id", "")),
        str(fault.get("kind", "")),
        str(fault.get("target", "")),
        " ".join(given) or "-",
        _when(fault.get("started_at")),
        _fault_state(fault),
        _when(ended),
    ]


@sim_app.command("faults")
def faults(
    *,
    url: FaultsUrl,
    all_faults: Annotated[
        bool, typer.Option("--all", help="Every fault injected since the exporter started, ended ones too.")
    ] = False,
    output: Annotated[str, output_option(TABLE_OUTPUTS, "table (or text) or json.")] = "table",
    timeout: FaultsTimeout = 10.0,
) -> None:
    """List the faults active in a running simulated fleet (--all: its whole fault log), oldest first."""
    body = _answered(_request("GET", url, "/sim/faults", timeout), "active", url)
    listed = body.get("log") if all_faults else body.get("active")
    if not isinstance(listed, list) or not all(isinstance(f, dict) for f in listed):
        raise _fail(f"{hidden_password(url)} answered a fault list that is not one: {body}")
    if output == "json":  # the exporter's fields, and the state the table shows
        typer.echo(json.dumps([{**fault, "state": _fault_state(fault)} for fault in listed], indent=2))
        return
    if not listed:
        say_none_found("faults" if all_faults else "active faults", {})
        return
    rows = [_fault_row(fault) for fault in listed]
    table = Table(whole_column("id", (row[0] for row in rows)))  # what `sim clear` takes
    for column in ("kind", "target", "given", "started", "state", "ended"):
        table.add_column(column, overflow="fold")  # a node and a time cut short say nothing
    for row in rows:
        table.add_row(*row)
    print_table(console, table)


@sim_app.command("clear")
def clear(
    fault_id: Annotated[str, typer.Argument(help="The fault's id, as `sim inject` printed it (f-0001).")],
    *,
    url: FaultsUrl,
    timeout: FaultsTimeout = 10.0,
) -> None:
    """End an active fault, as if its cause went away (a part replaced), and print the answer; exit 1 with
    the exporter's message for an unknown id. One that already ended exits 0 with a note on stderr, as
    `kubectl delete --ignore-not-found` does: a repeated clear is done, not failed. What the driver asks
    for after an XID (its recovery action: reboot after XID 79) stays until `sim inject reset_gpu` or
    `reboot_node`, as on a real node."""
    what = "the fault's id, as `gpuwarden sim faults` lists it (f-0001)"
    written("FAULT_ID", fault_id, what)
    if "/" in fault_id:  # no id has one; encoded, it reached no route, and the 404 blamed --simulate
        refuse_option(f"FAULT_ID {escape(repr(fault_id))}: no fault id has a '/'; write {what}")
    path = f"/sim/faults/{quote(fault_id, safe='')}"
    response = _request("DELETE", url, path, timeout)
    if _already_ended(response):
        err_console.print(
            f"note: fault {fault_id} had already ended; nothing to clear", highlight=False, markup=False
        )
        return
    body = _answered(response, "cleared", url)
    typer.echo(json.dumps(body))


def _already_ended(response: httpx.Response) -> bool:
    """Whether the exporter's 404 to ``DELETE /sim/faults/ID`` says the fault is in its log and over."""
    if response.status_code != 404:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    if not isinstance(body, dict) or body.get("field") != "id":  # a list, a proxy's JSON: not the exporter's
        return False
    said = body.get("error")
    return isinstance(said, str) and said.startswith(f"id: {ALREADY_ENDED}:")


@sim_app.command("show")
def show(
    *,
    simulate: Annotated[
        str | None,
        typer.Option(help="NODESxGPUS, e.g. 2x8 (default: exporter.simulate of --config, else 2x8)."),
    ] = None,
    seed: Annotated[
        int | None,
        whole_number(
            "--seed", None, help="Seed of the simulated fleet (default: sim.seed of --config, else 0)."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="The exporter's configuration file: the fleet it serves, as its sim section (seed,"
            " gpu_model, mig_gpus) and exporter.simulate make it, GPUWARDEN_ variables over them.",
        ),
    ] = None,
    output: Annotated[str, output_option(TABLE_OUTPUTS, "table (or text) or json.")] = "table",
) -> None:
    """Print the topology and workloads of a simulated fleet: with --config, the one `exporter --config`
    serves from that file (its UUIDs, GPU model and MIG instances)."""
    from gpuwarden.sim import build_fleet, parse_simulate_spec  # noqa: PLC0415 - only `sim show` runs a fleet

    full = _exporter_config(config)
    spec = simulate or (full.exporter.simulate if full is not None else None) or "2x8"
    try:
        nodes, gpus = parse_simulate_spec(spec)
    except InputError as exc:  # a bad option: 2, as `exporter --simulate 2y8`, and the option named once
        raise _fail(option_said("--simulate", spec, exc.message), code=2) from exc
    seed = seed if seed is not None else (full.sim.seed if full is not None else 0)
    shape: dict[str, Any] = {}
    if full is not None:  # as the exporter builds it (exporter_cmd._build)
        try:
            mig = mig_gpus(full, spec, "--simulate" if simulate else "exporter.simulate")
        except ConfigError as exc:
            print_problems(full.locate(exc))
            raise typer.Exit(1) from exc
        shape = {"gpu_model": full.sim.gpu_model, "mig_gpus": mig}
    # Topology and workloads only, which the warm-up of every GPU's readings does not change (24 s at 1024x8).
    fleet = build_fleet(nodes, gpus, seed=seed, clock=FakeClock(), warm_up=False, **shape)
    described = fleet.describe()
    if output == "json":
        typer.echo(json.dumps(described, indent=2))
        return
    columns = folded("node", "cluster", "rack", "gpu", "uuid", "pci_bus_id", "workload")  # a UUID never cut
    table = Table(*columns, title=f"simulated fleet {nodes}x{gpus} (seed {seed})")
    for node in described["nodes"]:
        for g in node["gpus"]:
            table.add_row(
                node["name"], node["cluster"], node["rack"], str(g["index"]), g["uuid"], g["pci_bus_id"],
                g["workload"] or "-",
            )  # fmt: skip
    print_table(console, table)  # a PCI bus id 00000000:AB:00.0 is data, not an emoji code
    for node in described["nodes"]:  # as the exporter's GPU_I_PROFILE labels name them
        for g in (g for g in node["gpus"] if g["mig"]):
            console.print(f"MIG on {node['name']}/{g['index']}: {', '.join(g['mig'])}", markup=False)
    for job in described["training_jobs"]:
        console.print(
            f"training job {job['namespace']}/{job['name']}: {len(job['ranks'])} ranks", markup=False
        )
    for svc in described["inference_services"]:
        console.print(
            f"inference service {svc['namespace']}/{svc['name']}: {len(svc['gpus'])} replicas", markup=False
        )


def _exporter_config(path: Path | None) -> GpuwardenConfig | None:
    """The configuration at ``path`` as ``exporter --config`` reads it (None without one); exit 1 naming each
    of its problems, as ``config validate`` does."""
    if path is None:
        return None
    from gpuwarden.cli.exporter_cmd import EXPORTER_SECTIONS  # noqa: PLC0415
    from gpuwarden.config import load_config  # noqa: PLC0415

    try:
        return load_config(path, secrets_for=EXPORTER_SECTIONS)
    except ConfigError as exc:
        print_problems(exc)
        raise typer.Exit(1) from exc


def register(app: typer.Typer) -> None:
    """Add the ``sim`` group to the root app."""
    app.add_typer(sim_app, name="sim")
