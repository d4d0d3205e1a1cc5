"""``gpuwarden loadgen``: drive the local inference server at a rate, bounded in count and time."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from collections.abc import Callable
from enum import StrEnum
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer
from rich.markup import escape

from exporters.loadlimits import MAX_CONCURRENCY, MAX_DURATION_SECONDS, MAX_REQUESTS, MAX_TOKENS
from gpuwarden.cli.consoles import err_console
from gpuwarden.cli.foreign_answers import foreign_said
from gpuwarden.cli.incidents_cmd import TEXT_OUTPUTS, checked_url, output_option
from gpuwarden.cli.numbers import number, whole_number
from gpuwarden.cli.output_options import enum_option
from gpuwarden.cli.progress import StepProgress
from gpuwarden.cli.tls_trust import ca_file_refusal
from gpuwarden.errors import InputError
from gpuwarden.printable import SAID_CHARS, clipped
from gpuwarden.redaction import hidden_password

if TYPE_CHECKING:
    from exporters.load_answers import ForeignAnswer
    from exporters.loadgen import LoadPlan, LoadReport

# What loadgen counts, by exception name, for a request that reached no server.
CONNECT_ERRORS = {"ConnectError", "ConnectTimeout"}


class RouteChoice(StrEnum):
    """OpenAI-compatible routes loadgen can drive."""

    CHAT = "chat"
    COMPLETIONS = "completions"


def loadgen(
    *,
    url: Annotated[
        str,
        typer.Option(
            help="Base URL of the server (this machine only), with or without the /v1 of an OpenAI base URL."
        ),
    ] = "http://127.0.0.1:8000",
    requests: Annotated[
        int, whole_number("--requests", 1, MAX_REQUESTS, help="Stop sending after this many requests.")
    ] = 100,
    duration: Annotated[
        float,
        number(
            "--duration",
            0,
            MAX_DURATION_SECONDS,
            above=True,
            help="Stop after this many seconds; requests still running then are cancelled.",
        ),
    ] = 30.0,
    rate: Annotated[
        float, number("--rate", 0, help="Requests per second; 0 = as fast as concurrency allows.")
    ] = 10.0,
    concurrency: Annotated[
        int, whole_number("--concurrency", 1, MAX_CONCURRENCY, help="Requests in flight at most.")
    ] = 8,
    route: Annotated[
        RouteChoice, enum_option("--route", RouteChoice, "Which OpenAI route to drive.")
    ] = RouteChoice.CHAT,
    model: Annotated[str, typer.Option(help="Model name to ask for.")] = "gpuwarden-toy-1",
    max_tokens: Annotated[
        int, whole_number("--max-tokens", 1, MAX_TOKENS, help="Output tokens per request.")
    ] = 16,
    stream: Annotated[bool, typer.Option(help="Stream responses (reports time to first token).")] = False,
    allow_errors: Annotated[
        bool, typer.Option(help="Exit 0 even if some requests failed (as long as one succeeded).")
    ] = False,
    output: Annotated[str, output_option(TEXT_OUTPUTS, "Report format (table is text).")] = "text",
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar on stderr (shown only at a terminal).")
    ] = False,
) -> None:
    """Drive a local inference server at a given rate, bounded in count and time; print P50/P95/P99.

    Percentiles cover successful requests (a 2xx completion; with --stream no error event in the stream),
    measured from the send and, with --rate, from the scheduled send (which counts the wait for a
    concurrency slot); failures are counted by HTTP status, error event in the stream (stream_error:503),
    a 2xx that is no completion (not_a_completion) or error (timeouts included), and requests cut by
    --duration as unfinished.

    Exit status: 0 when every finished request succeeded; 1 when any failed (0 with --allow-errors), when
    none succeeded, or when the server could not be reached; 2 for a bad option; 130 after Ctrl-C (143
    after SIGTERM), which stops the run as --duration does and still prints the report.
    """
    from exporters.loadgen import LoadPlan  # noqa: PLC0415 - httpx, for this command only

    plan = LoadPlan(
        url=checked_url(url),
        requests=requests,
        duration_seconds=duration,
        rate=rate,
        concurrency=concurrency,
        route=route.value,
        model=model,
        max_tokens=max_tokens,
        stream=stream,
    )
    try:
        plan.validate()
    except InputError as exc:
        err_console.print(f"[red]error:[/red] {escape(_refusal(exc, plan))}")
        raise typer.Exit(2) from exc
    unusable = ca_file_refusal(os.environ, "loadgen")
    if unusable is not None:  # httpx loads it as its client is built, for http:// too: a traceback, exit 1
        err_console.print(f"[red]error:[/red] {escape(str(unusable))}", soft_wrap=True)
        raise typer.Exit(2)
    with StepProgress(err_console, quiet=quiet) as progress:  # up to --duration (30 s) with nothing shown
        progress.phase(
            f"{plan.requests} requests to {escape(hidden_password(plan.url))}", total=plan.requests
        )
        told = functools.partial(progress.advance, total=plan.requests, redraw=False)  # not per request
        report, interrupted = asyncio.run(_run_until_interrupted(plan, told))
    if report.statuses and not report.ok and set(report.statuses) <= CONNECT_ERRORS:
        err_console.print(  # not one request reached a server
            f"[red]error:[/red] cannot connect to {escape(hidden_password(url))}: is the server running?"
            " (`gpuwarden inference-server`, port 8000 by default)"
        )
        raise typer.Exit(1)
    if report.foreign is not None:  # every request reached something that is no inference server
        err_console.print(
            f"[red]error:[/red] {escape(_foreign_said(url, plan, report.foreign))}", soft_wrap=True
        )
        raise typer.Exit(1)
    typer.echo(report.to_json() if output == "json" else report.to_text())
    for warning in report.warnings if output == "json" else ():  # the text report shows them
        err_console.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
    code = 128 + interrupted if interrupted else report.exit_code(allow_errors=allow_errors)
    if code:
        raise typer.Exit(code)


def _foreign_said(url: str, plan: LoadPlan, foreign: ForeignAnswer) -> str:
    """That ``--url`` is no OpenAI-compatible inference server, and what answered there: the status, the
    Server header and what the answer says (an HTML page's title)."""
    route = urlsplit(plan.endpoint()).path
    try:
        status = f"{foreign.status} {HTTPStatus(foreign.status).phrase}"
    except ValueError:
        status = str(foreign.status)
    server = f" (Server: {clipped(foreign.server, SAID_CHARS)})" if foreign.server else ""
    text = foreign_said(foreign.body)
    found = f"{status}{server}" + (f': "{text}"' if text else "")
    return (
        f"--url {hidden_password(url)} is not an OpenAI-compatible inference server (or has no POST {route}):"
        f" it answered {found}. Give the base URL of one: `gpuwarden inference-server` (port 8000 by"
        " default), vLLM, ..."
    )


def _refusal(exc: InputError, plan: LoadPlan) -> str:
    """What the plan refused, as every bad option is said: the option as typed and its value (``--url
    'http://example.com': ...``), not the plan's field name. The numbers' own options refuse what the plan
    would first; a duration is shown whole (``:g`` showed 3600.0001 as 3600, which it accepts)."""
    if not exc.field:
        return str(exc)
    typed = {"url": repr(plan.url), "duration": repr(plan.duration_seconds)}
    value = typed.get(exc.field, str(getattr(plan, exc.field, "")))
    return f"--{exc.field.replace('_', '-')} {value}: {exc.message}"


# What stops a run as --duration would, as the report names it. Its exit status is 128 + the signal, as a
# shell reports a command a signal stopped: 130 for Ctrl-C, 143 for SIGTERM (`timeout`, `kill`, a pod's stop).
STOP_SIGNALS: dict[int, str] = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


async def _run_until_interrupted(
    plan: LoadPlan, progress: Callable[[int], None]
) -> tuple[LoadReport, int | None]:
    """Run ``plan``; Ctrl-C (SIGINT) or SIGTERM ends it as ``--duration`` would, so what finished is still
    reported (SIGTERM killed it without a report); the signal that did, if one did."""
    from exporters.loadgen import run_load  # noqa: PLC0415 - httpx, for this command only

    stop = asyncio.Event()
    came: list[int] = []

    def stopped(sig: int) -> None:
        came.append(sig)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stopped, sig)
    try:
        report = await run_load(plan, stop=stop, progress=progress, stopped_by=lambda: STOP_SIGNALS[came[0]])
        return report, (came[0] if came else None)
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


def register(app: typer.Typer) -> None:
    """Add ``loadgen`` to the root app."""
    app.command("loadgen")(loadgen)
