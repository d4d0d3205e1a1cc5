"""``gpuwarden incidents``: list, show, ack, mitigate, note, silence, resolve, postmortem, over the API."""

from __future__ import annotations

import functools
import getpass
import inspect
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec
from urllib.parse import quote, urlsplit

import typer
from rich.markup import escape
from rich.table import Table

from gpuwarden.cli.consoles import console, err_console, option_said, refuse_option
from gpuwarden.cli.listings import say_none_found
from gpuwarden.cli.numbers import number, whole_number
from gpuwarden.clock import shown_text
from gpuwarden.errors import InputError
from gpuwarden.headers import FIELD_HEADER, TOKEN_ENV, TOKEN_UNSENDABLE, token_missing, unsendable_character
from gpuwarden.model import IncidentState, Priority, fault_name, impact_text
from gpuwarden.printable import escape_controls, escape_controls_in
from gpuwarden.redaction import hidden_password, quoting_only
from gpuwarden.urls import url_problem

if TYPE_CHECKING:  # httpx (~0.2 s) is imported by the commands that call the API, not by every command
    import httpx

incidents_app = typer.Typer(help="Incidents of a running `gpuwarden serve`.", no_args_is_help=True)
MAX_LIMIT = 1_000_000_000  # the API's largest ?limit= (gpuwarden.api.MAX_LIMIT; the CLI does not import it)

P = ParamSpec("P")
DEFAULT_TIMEOUT_SECONDS = 30.0  # above serve's own read wait (10 s) plus a store that answers slowly
# A day: 1e10 (or inf) overflowed the socket's timeout, a traceback and exit 1 as if serve were unreachable.
MAX_TIMEOUT_SECONDS = 86_400.0


@dataclass
class RequestSettings:
    """What the ``incidents`` group's options set for every request of this one CLI invocation."""

    timeout: float = DEFAULT_TIMEOUT_SECONDS


settings = RequestSettings()


RequestTimeoutOption = Annotated[
    float,
    number(
        "--request-timeout",
        0.1,
        MAX_TIMEOUT_SECONDS,
        envvar="GPUWARDEN_REQUEST_TIMEOUT",
        help="Seconds to wait for serve's answer (as kubectl's --request-timeout).",
    ),
]
# The same option on each command, after its name, where users type it (``incidents list --request-timeout
# 5``); given there, it overrides the group's. ``None``: not given on the command.
CommandTimeoutOption = Annotated[
    float | None,
    number(
        "--request-timeout",
        0.1,
        MAX_TIMEOUT_SECONDS,
        show_default=False,
        help="Seconds to wait for serve's answer (as kubectl's --request-timeout; default 30,"
        " or GPUWARDEN_REQUEST_TIMEOUT).",
    ),
]


def add_request_options(group: typer.Typer) -> None:
    """Give ``group`` the options that every request of its commands uses (``--request-timeout``), taken
    before the command's name too (``incidents --request-timeout 5 list``)."""

    def options(request_timeout: RequestTimeoutOption = DEFAULT_TIMEOUT_SECONDS) -> None:
        settings.timeout = request_timeout

    group.callback(help=group.info.help)(options)


add_request_options(incidents_app)


UrlOption = Annotated[
    str, typer.Option("--url", envvar="GPUWARDEN_URL", help="Base URL of `gpuwarden serve`.")
]


def checked_url(url: str, envvar: str | None = None) -> str:
    """``url`` if requests can be sent to it; else ``error: --url URL: not a valid URL (why)``, exit 2,
    naming ``envvar`` instead where the URL is that variable's value (the option's fallback)."""
    problem = _blanks(url) or url_problem(url) or _not_a_base(url)
    if problem is not None:
        shown = hidden_password(url)  # serve may sit behind a proxy that takes a password or a token
        origin = envvar if envvar is not None and os.environ.get(envvar) == url else "--url"
        err_console.print(
            f"[red]error:[/red] {origin} {escape(repr(shown))}: not a valid URL"
            f" ({escape(quoting_only(problem, url, shown))})",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    return url


def _tls_hint(url: str, exc: Exception) -> str:
    """What to write when https:// met a server speaking plain HTTP (serve has no TLS of its own)."""
    if url.lower().startswith("https://") and "WRONG_VERSION_NUMBER" in str(exc):
        return " (the server speaks plain HTTP: use http://, or the address of the TLS proxy in front of it)"
    return ""


def _blanks(url: str) -> str | None:
    """A blank around ``url`` (a variable set with a space): before it, it "must start with http://"; after
    it, the error named a port with a space in it."""
    return "a blank before or after it; remove it" if url != url.strip() else None


def _not_a_base(url: str) -> str | None:
    """Why ``url`` cannot have a path put after it (each command adds its own: ``?x=1`` made every request
    ``/?x=1/api/...``, a 404)."""
    split = urlsplit(url)
    if split.query or split.fragment or url.rstrip("/").endswith(("?", "#")):
        return "a base URL takes no ?query or #fragment"
    return None


def api_request(method: str, url: str, path: str, **kwargs: Any) -> httpx.Response:
    checked_url(url, envvar="GPUWARDEN_URL")
    headers = kwargs.pop("headers", {})
    token = os.environ.get(TOKEN_ENV)
    if token:
        if unsendable_character(token, tab=False) is not None:  # httpx raised UnicodeEncodeError sending it
            err_console.print(f"[red]error:[/red] {TOKEN_ENV} {TOKEN_UNSENDABLE}")
            raise typer.Exit(2)
        headers["Authorization"] = f"Bearer {token}"
    import httpx  # noqa: PLC0415 - see TYPE_CHECKING above

    timeout = settings.timeout
    try:
        response = httpx.request(method, url.rstrip("/") + path, headers=headers, timeout=timeout, **kwargs)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing listens there (or a standby's port)
        err_console.print(
            f"[red]error:[/red] cannot connect to {escape(hidden_password(url))}: {escape(str(exc))}"
            f"{_tls_hint(url, exc) or '; is `gpuwarden serve` running there? (--url or GPUWARDEN_URL)'}"
        )
        raise typer.Exit(1) from exc
    except httpx.TimeoutException as exc:  # connected: serve took the request and did not answer in time
        err_console.print(
            f"[red]error:[/red] timed out after {timeout:g} s waiting for an answer from"
            f" {escape(hidden_password(url))}"
            " (raise --request-timeout, or look at serve's log and /-/ready)"
        )
        raise typer.Exit(1) from exc
    except httpx.HTTPError as exc:
        err_console.print(
            f"[red]error:[/red] cannot reach {escape(hidden_password(url))}: {escape(str(exc))}"
        )
        raise typer.Exit(1) from exc
    if response.status_code >= 400:
        err_console.print(f"[red]error:[/red] {escape(_refusal(response, token))}")
        raise typer.Exit(1)
    return response


def _refusal(response: httpx.Response, token: str | None) -> str:
    """What an error answer says, and what to check when that alone does not help: a 401 sent without a
    token, or an answer that is not gpuwarden's (a plain 404 said "HTTP 404: " and no more)."""
    try:
        data = response.json()
    except ValueError:
        data = None
    # gpuwarden's API: {"error", "field"}; Alertmanager's (/api/v2): a JSON string or {"code", "message"}.
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        message, ours = data["error"], True
    elif isinstance(data, dict) and isinstance(data.get("message"), str) and FIELD_HEADER in response.headers:
        message, ours = data["message"], True  # a real Alertmanager's has no field header: not ours
    elif isinstance(data, str):
        message, ours = data, True
    else:
        message, ours = response.text.strip() or "an empty answer", False
    said = f"HTTP {response.status_code}: {message}"
    if response.status_code == 401 and not token:
        return f"{said}; {token_missing(token)}"
    return said if ours else f"{said} (not gpuwarden's answer: is --url a gpuwarden serve?)"


def api_json(method: str, url: str, path: str, shape: type, **kwargs: Any) -> Any:
    """``api_request``'s answer as JSON of the expected shape (an object or a list), or a clear error."""
    return answer_json(api_request(method, url, path, **kwargs), url, shape)


def answer_json(response: httpx.Response, url: str, shape: type) -> Any:
    """A response's JSON if it has the shape gpuwarden answers with; else ``not_gpuwarden``."""
    try:
        data = response.json()
    except ValueError:
        not_gpuwarden(url, f"HTTP {response.status_code} with a body that is not JSON")
    if not isinstance(data, shape):
        not_gpuwarden(url, f"a JSON {type(data).__name__} where gpuwarden answers a JSON {shape.__name__}")
    return data


def not_gpuwarden(url: str, why: str) -> NoReturn:
    """The server at ``url`` is not a gpuwarden serve (or not this version): say so, exit 1."""
    err_console.print(
        f"[red]error:[/red] {escape(hidden_password(url))} did not answer as gpuwarden serve does"
        f" ({escape(why)});"
        " is --url right?"
    )
    raise typer.Exit(1)


def gpuwarden_answers(command: Callable[P, None]) -> Callable[P, None]:
    """A command that talks to serve: it takes ``--request-timeout`` after its name, and one that lacks what
    serve sends in its answer is ``not_gpuwarden``."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        timeout = kwargs.pop("request_timeout", None)
        if timeout is not None:
            settings.timeout = float(timeout)  # type: ignore[arg-type]
        try:
            command(*args, **kwargs)
        except (KeyError, TypeError, AttributeError) as exc:
            not_gpuwarden(str(kwargs.get("url", "")), f"{type(exc).__name__}: {exc}")

    signature = inspect.signature(command, eval_str=True)  # what typer reads: the annotations evaluated
    timeout_param = inspect.Parameter(
        "request_timeout", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=CommandTimeoutOption
    )
    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), timeout_param]
    )
    return run


def incident_path(incident_id: str, suffix: str = "") -> str:
    """The API path of an incident, its id percent-encoded: ``a/../b`` must not reach incident ``b``."""
    if not incident_id.strip():
        err_console.print("[red]error:[/red] the incident id is empty; `gpuwarden incidents list` shows them")
        raise typer.Exit(1)
    return f"/api/v1/incidents/{quote(incident_id, safe='')}{suffix}"


# -o/--output of every command that prints something, as kubectl's: json for scripts, and for people a table
# (listings) or text (one item); each listing and each item takes both words for the human form.
TABLE_OUTPUTS = ("table", "text", "json")
TEXT_OUTPUTS = ("text", "table", "json")
EXPORT_OUTPUTS = ("yaml", "json")  # a file alerting.inventory_file reads
MARKDOWN_OUTPUTS = ("markdown", "text", "json")  # a document: the postmortem draft


def output_option(allowed: Sequence[str], help_text: str) -> Any:
    """The ``-o/--output`` option of a command that prints one of ``allowed``, which ``--help`` lists
    (``<table|text|json>``, as it does every other choice); ``check_output`` takes the value as ``allowed``
    spells it and refuses any other, while the command line is read: the command is given one of
    ``allowed``, named here once. Not while the shell completes a command line (``resilient_parsing``):
    nothing runs then, and an error would be printed at the prompt at each TAB."""
    choices = tuple(allowed)

    def checked(ctx: typer.Context, value: str) -> str:
        return value if ctx.resilient_parsing else check_output(value, choices)

    return typer.Option("--output", "-o", metavar=f"<{'|'.join(choices)}>", help=help_text, callback=checked)


def check_output(output: str, allowed: tuple[str, ...]) -> str:
    """``output`` as ``allowed`` spells it (``-o JSON`` is json); refuse one not in it, naming the ones that
    are."""
    return str(check_choice("--output", output, allowed))


def check_choice(option: str, value: str | None, allowed: Sequence[str]) -> str | None:
    """``value`` of ``option`` as ``allowed`` spells it, in any case (``--priority p1`` is P1, as kubectl
    and sacct take either); ``None`` when not given. One not in ``allowed`` is refused, naming the ones that
    are, before any request: exit 2, as for every bad option (1 says that serve failed or refused)."""
    if value is None:
        return None
    for choice in allowed:
        if value.casefold() == choice.casefold():
            return choice
    refuse_option(f"{option} {escape(repr(value))}: use one of {', '.join(allowed)}")


def describe_target(target: dict[str, Any]) -> str:
    """A root cause's target as people read it, as titles name it: ``gpu node-01/3``, ``node node-06``,
    ``inference service llama``, ``pod prod/llm-chat-5`` (a pod with its namespace, as kubectl needs it)."""
    kind = target.get("type", "")
    if kind == "gpu":
        return f"gpu {target.get('node')}/{target.get('index')}"
    if kind == "workload":
        name, namespace = target.get("name"), target.get("namespace")
        if target.get("kind") == "pod" and namespace:
            name = f"{namespace}/{name}"
        return f"{str(target.get('kind', '')).replace('_', ' ')} {name}"
    return f"{kind} {target.get('name', '')}"


def describe_root(root: dict[str, Any]) -> str:
    """A root cause as the API gives it, as people read it: ``GPU lost @ gpu node-02/3``; ``... @ rack r01 in
    cluster b`` where the API names its cluster (a fleet of more than one cluster, as titles do)."""
    where = f" in cluster {root['cluster']}" if root.get("cluster") else ""
    return f"{fault_name(root['kind'])} @ {describe_target(root['target'])}{where}"


@incidents_app.command("list")
@gpuwarden_answers
def list_incidents(
    url: UrlOption = "http://127.0.0.1:8080",
    output: Annotated[str, output_option(TABLE_OUTPUTS, "table (or text) or json")] = "table",
    state: Annotated[
        str | None, typer.Option(help=f"Only this state: {', '.join(s.value for s in IncidentState)}.")
    ] = None,
    priority: Annotated[str | None, typer.Option(help="Only this priority (P0-P3).")] = None,
    limit: Annotated[
        int, whole_number("--limit", 0, MAX_LIMIT, help="At most this many, newest first; 0 lists all.")
    ] = 50,
) -> None:
    """List incidents, newest first."""
    state = check_choice("--state", state, [s.value for s in IncidentState])
    priority = check_choice("--priority", priority, [p.value for p in Priority])
    params: dict[str, str | int] = {
        k: v for k, v in (("state", state), ("priority", priority)) if v is not None
    }
    if limit:
        params["limit"] = limit
    response = api_request("GET", url, "/api/v1/incidents", params=params)
    items = answer_json(response, url, list)
    if output == "json":
        typer.echo(json.dumps(items, indent=2))
        return
    if not items:
        say_none_found("incidents", {"state": state, "priority": priority})
        return
    items = escape_controls_in(items)  # label text: an ESC sequence or a newline is shown, not obeyed
    table = Table("id", "priority", "state", "root cause", "alerts", "opened", "title")
    for i in items:
        table.add_row(
            i["id"],
            i["priority"],
            _state(i),
            describe_root(i["root_cause"]),
            _alert_count(i),
            _opened(i),
            i["title"],
        )
    console.print(table, markup=False)  # titles and names are data, not markup
    total = int(response.headers.get("X-Total-Count", len(items)))
    if total > len(items):
        err_console.print(f"showing the newest {len(items)} of {total}; --limit 0 lists all")


def _state(inc: dict[str, Any]) -> str:
    """The state, and where a merged incident went or until when a silenced one notifies nobody."""
    merged, until = inc.get("merged_into"), inc.get("silenced_until")
    if merged:
        return f"{inc['state']} (merged into {merged})"
    return f"{inc['state']} (silenced until {shown_text(until)})" if until else str(inc["state"])


def _alert_count(inc: dict[str, Any]) -> str:
    """How many alerts it has; of a merged incident, how many it handed over ("3 moved": they go on in the
    incident ``_state`` names, not 0)."""
    return f"{inc['alert_count']} moved" if inc.get("merged_into") else str(inc["alert_count"])


def _opened(inc: dict[str, Any]) -> str:
    """When it opened, or last reopened: what the list sorts by."""
    last = inc.get("last_opened_at")
    if last and last != inc["opened_at"]:
        return f"{shown_text(last)} (reopened)"
    return shown_text(str(inc["opened_at"]))


@incidents_app.command("show")
@gpuwarden_answers
def show(
    incident_id: str,
    url: UrlOption = "http://127.0.0.1:8080",
    output: Annotated[str, output_option(TEXT_OUTPUTS, "text (or table) or json")] = "text",
) -> None:
    """Show one incident with its impact, recommended actions and timeline."""
    inc = api_json("GET", url, incident_path(incident_id), dict)
    if output == "json":
        typer.echo(json.dumps(inc, indent=2))
        return
    inc = escape_controls_in(inc)  # label text: an ESC sequence or a newline is shown, not obeyed
    console.print(
        f"[bold]{escape(inc['priority'])}[/bold] {escape(inc['title'])}"
        f"  ({escape(inc['id'])}, {escape(_state(inc))})"
    )
    console.print(f"root cause: {describe_root(inc['root_cause'])}", markup=False)
    impact = impact_text(inc["impact"]["summary"], inc["impact"].get("gpus_affected", 0)) or "-"
    console.print(f"impact: {impact}; alerts: {_alert_count(inc)}", markup=False)
    actions = inc.get("recommended_actions", [])  # as Slack and webhooks say them, the most drastic first
    if actions:
        console.print(f"recommended: {', '.join(actions)}", markup=False)
    for event in inc["timeline"]:
        console.print(f"  {shown_text(event['at'])}  {event['kind']:<20} {event['message']}", markup=False)


ByOption = Annotated[
    str,
    typer.Option(
        "--by",
        "--author",
        help="Who does it (default: $USER, else the OS user, as amtool's --author; else uid N).",
    ),
]


def who(by: str) -> str:
    """Who a command says did it: ``--by``, else ``$USER``, else the OS user name (``LOGNAME``, the password
    database), else ``uid N``. A cron job or container has no ``$USER``, and every action read "by cli"."""
    if by:
        return by
    if os.environ.get("USER"):
        return os.environ["USER"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name variable and a uid the password database lacks (a container)
        return f"uid {os.getuid()}"


def written(name: str, text: str, what: str) -> str:
    """``text`` of the option or argument ``name``; an empty or blank one is refused before any request (exit
    2: a usage error, which serve's 400 made an exit 1)."""
    if not text.strip():
        refuse_option(f"{name} {escape(repr(text))}: empty; write {what}")
    return text


def _act(url: str, incident_id: str, action: str, body: dict[str, str], by: str) -> dict[str, Any]:
    body = {**body, "by": who(by)}
    inc: dict[str, Any] = api_json("POST", url, incident_path(incident_id, f"/{action}"), dict, json=body)
    return inc


@incidents_app.command("ack")
@gpuwarden_answers
def ack(incident_id: str, url: UrlOption = "http://127.0.0.1:8080", by: ByOption = "") -> None:
    """Acknowledge an incident (needs GPUWARDEN_API_TOKEN); says so when someone already did."""
    inc = _act(url, incident_id, "ack", {}, by)
    _said(inc)


@incidents_app.command("mitigate")
@gpuwarden_answers
def mitigate(
    incident_id: str,
    action: Annotated[str, typer.Option(help="What is being done, e.g. 'draining node r07-n03'.")],
    url: UrlOption = "http://127.0.0.1:8080",
    by: ByOption = "",
) -> None:
    """Mark an incident mitigating: someone is working on it (needs GPUWARDEN_API_TOKEN); says so when
    someone already marked the same action."""
    inc = _act(
        url, incident_id, "mitigate", {"action": written("--action", action, "what is being done")}, by
    )
    _said(inc)


@incidents_app.command("note")
@gpuwarden_answers
def note(
    incident_id: str,
    text: Annotated[str, typer.Argument(help="The note (timeline, Slack thread, postmortem).")],
    url: UrlOption = "http://127.0.0.1:8080",
    by: ByOption = "",
) -> None:
    """Add a note to an incident's timeline (needs GPUWARDEN_API_TOKEN)."""
    inc = _act(url, incident_id, "notes", {"text": written("TEXT", text, "the note")}, by)
    typer.echo(f"{inc['id']}: noted")


@incidents_app.command("silence")
@gpuwarden_answers
def silence(
    incident_id: str,
    duration: Annotated[str, typer.Option("--for", help="How long: 30m, 1h, 1h30m, 2d.")] = "1h",
    url: UrlOption = "http://127.0.0.1:8080",
    by: ByOption = "",
) -> None:
    """Silence an incident's alerts for a while (needs GPUWARDEN_API_TOKEN); says so when a silence that
    has at least half of that left holds it already."""
    from alerting.silences import parse_duration  # noqa: PLC0415 (only this command needs it)

    try:
        parse_duration(duration, field="--for")
    except InputError as exc:  # serve would refuse it (400): said here, as a bad option
        refuse_option(escape(option_said("--for", duration, exc.message)))
    inc = _act(url, incident_id, "silence", {"duration": duration}, by)
    if inc.get("changed") is False:  # a silence holds it already: whose, and until when
        _said(inc)
    else:
        typer.echo(f"{inc['id']}: silenced for {duration}")


@incidents_app.command("resolve")
@gpuwarden_answers
def resolve(incident_id: str, url: UrlOption = "http://127.0.0.1:8080", by: ByOption = "") -> None:
    """Resolve an incident now, without its quiet period, once none of its alerts fires (needs
    GPUWARDEN_API_TOKEN)."""
    inc = _act(url, incident_id, "resolve", {}, by)
    _said(inc)


def _said(inc: dict[str, Any]) -> None:
    """An action's answer: the new state, or what the server says when the action changed nothing."""
    if inc.get("changed") is False:
        typer.echo(escape_controls(f"{inc['id']}: {inc['message']}"))
    else:
        typer.echo(f"{inc['id']}: {inc['state']}")


@incidents_app.command("postmortem")
@gpuwarden_answers
def postmortem(
    incident_id: str,
    url: UrlOption = "http://127.0.0.1:8080",
    output: Annotated[
        str, output_option(MARKDOWN_OUTPUTS, "markdown (or text) or json: {incident, markdown}")
    ] = "markdown",
) -> None:
    """Print the Markdown postmortem draft."""
    draft = api_request("GET", url, incident_path(incident_id, "/postmortem")).text
    if output == "json":  # the shape of `gpuwarden demo -o json`'s postmortem; json.dumps escapes controls
        typer.echo(json.dumps({"incident": incident_id, "markdown": draft}, indent=2))
        return
    typer.echo(escape_controls(draft, keep="\n"))  # its lines stay lines; nothing else reaches the terminal


def register(app: typer.Typer) -> None:
    """Add the ``incidents`` group to the root app."""
    app.add_typer(incidents_app, name="incidents")
