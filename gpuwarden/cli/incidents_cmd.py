"""``gpuwarden incidents``: list, show, ack, mitigate, note, silence, resolve, postmortem, over the API."""

from __future__ import annotations

import json
import os
import pwd
import shlex
from functools import partial
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand

from gpuwarden.cli.api_requests import (
    MAX_TIMEOUT_SECONDS,
    UrlOption,
    add_request_options,
    answer_json,
    api_json,
    api_request,
    checked_url,
    gpuwarden_answers,
    not_gpuwarden,
)
from gpuwarden.cli.consoles import console, folded, option_said, refuse_option, whole_column
from gpuwarden.cli.listings import say_next_page, say_none_found
from gpuwarden.cli.numbers import whole_number
from gpuwarden.cli.output_options import (
    EXPORT_OUTPUTS,
    MARKDOWN_OUTPUTS,
    TABLE_OUTPUTS,
    TEXT_OUTPUTS,
    check_choice,
    choice_metavar,
    output_option,
)
from gpuwarden.cli.tables import print_table
from gpuwarden.clock import shown_text
from gpuwarden.errors import InputError
from gpuwarden.headers import TOKEN_ENV
from gpuwarden.model import IncidentState, Priority, fault_name, impact_text
from gpuwarden.printable import escape_controls, escape_controls_in
from gpuwarden.redaction import hidden_password

# What other commands and the tests import from here, wherever it is defined.
__all__ = [
    "EXPORT_OUTPUTS",
    "MAX_TIMEOUT_SECONDS",
    "TABLE_OUTPUTS",
    "TEXT_OUTPUTS",
    "AuthorOption",
    "ByCommand",
    "ByOption",
    "UrlOption",
    "add_request_options",
    "api_json",
    "check_choice",
    "checked_url",
    "describe_root",
    "gpuwarden_answers",
    "output_option",
    "who",
]

incidents_app = typer.Typer(help="Incidents of a running `gpuwarden serve`.", no_args_is_help=True)
MAX_LIMIT = 1_000_000_000  # the API's largest ?limit= (gpuwarden.api.MAX_LIMIT; the CLI does not import it)


add_request_options(incidents_app)


def incident_path(incident_id: str, suffix: str = "") -> str:
    """The API path of an incident, its id percent-encoded: ``a/../b`` must not reach incident ``b``."""
    # Empty, it named the incidents collection (or "/ack" under it); said as a bad argument (exit 2), as a
    # missing one is: no request went out, so it is not serve failing (1).
    written("INCIDENT_ID", incident_id, "the incident's id (`gpuwarden incidents list` shows them)")
    if "/" in incident_id:  # serve routes on the decoded path: %2F split it, `inc-1/` a redirect, not a 404
        refuse_option(
            f"INCIDENT_ID {escape(repr(incident_id))}: an incident's id holds no '/' (`gpuwarden incidents"
            " list` shows them)"
        )
    return f"/api/v1/incidents/{quote(incident_id, safe='')}{suffix}"


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
    ctx: typer.Context,
    *,
    url: UrlOption = "http://127.0.0.1:8080",
    output: Annotated[str, output_option(TABLE_OUTPUTS, "table (or text) or json")] = "table",
    state: Annotated[
        str | None,
        typer.Option(
            metavar=choice_metavar([s.value for s in IncidentState]),
            help=f"Only this state: {', '.join(s.value for s in IncidentState)}.",
        ),
    ] = None,
    priority: Annotated[
        str | None,
        typer.Option(metavar=choice_metavar([p.value for p in Priority]), help="Only this priority (P0-P3)."),
    ] = None,
    limit: Annotated[
        int, whole_number("--limit", 0, MAX_LIMIT, help="At most this many, newest first; 0 lists all.")
    ] = 50,
    after: Annotated[
        str | None,
        typer.Option(
            "--continue",
            metavar="TOKEN",
            help="The next page: the token the previous page gave (below its table, on stderr).",
        ),
    ] = None,
) -> None:
    """List incidents, newest first; a page at a time with --limit and --continue."""
    state = check_choice("--state", state, [s.value for s in IncidentState])
    priority = check_choice("--priority", priority, [p.value for p in Priority])
    params: dict[str, str | int] = {
        k: v for k, v in (("state", state), ("priority", priority)) if v is not None
    }
    if limit:
        params["limit"] = limit
    if after is not None:
        params["continue"] = after
    response = api_request("GET", url, "/api/v1/incidents", params=params)
    items = answer_json(response, url, list)
    total = _total_count(response.headers.get("X-Total-Count"), url, len(items))
    said: dict[str, object | None] = {
        "--url": _url_said(ctx, url),
        "--state": state,
        "--priority": priority,
        "--limit": limit if limit != 50 else None,
        "-o": "json" if output == "json" else None,
    }
    next_page = partial(say_next_page, response.headers.get("X-Continue"), after is not None, said)
    if output == "json":
        typer.echo(json.dumps(items, indent=2))
        # The list cannot say it was cut without changing its shape: stderr does, as below the table.
        next_page(len(items), total)
        return
    if not items:
        say_none_found("incidents", {"state": state, "priority": priority})
        return
    items = escape_controls_in(items)  # label text: an ESC sequence or a newline is shown, not obeyed
    # The ids whole, a merged one's too (folded in its state, never cut): the next command takes them.
    # The rest folded, never cut: at 80 columns the opened time read `2026-12…`.
    table = Table(
        whole_column("id", (i["id"] for i in items)),
        *folded("priority", "state", "root cause", "alerts", "opened", "title"),
    )
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
    print_table(console, table)  # titles and names are data, not markup
    next_page(len(items), total)


def _url_said(ctx: typer.Context, url: str) -> str | None:
    """``--url`` as the next page's command must give it: the URL given on the command line (a password in it
    hidden), else nothing, as the default and ``GPUWARDEN_URL`` still hold for the next command. Left out,
    the next page of ``--url http://gw:8080`` went to 127.0.0.1:8080."""
    source = ctx.get_parameter_source("url")
    if source is None or source.name != "COMMANDLINE":
        return None
    return shlex.quote(escape_controls(hidden_password(url)))


def _total_count(header: str | None, url: str, listed: int) -> int:
    """How many incidents match, ``--limit`` aside (serve's ``X-Total-Count``; ``listed`` without one); one
    that is no number is not serve's (it raised ValueError, a traceback, with ``-o json`` too)."""
    if header is None:
        return listed
    try:
        return int(header)
    except ValueError:
        not_gpuwarden(url, f"X-Total-Count {header!r} is not a whole number")


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
    for line in lifting(url, inc):
        console.print(line, markup=False)
    for event in inc["timeline"]:
        console.print(f"  {shown_text(event['at'])}  {event['kind']:<20} {event['message']}", markup=False)


ByOption = Annotated[
    str | None,
    typer.Option(
        "--by", help="Who does it (default: $USER, else the OS user, as amtool's --author; else uid N)."
    ),
]
# Its own option, not another name of --by: click does not say which name was typed, and a refusal names the
# option as typed (``--author ''``); ``ByCommand`` keeps them one option to the user.
AuthorOption = Annotated[str | None, typer.Option("--author", help="The same as --by, as amtool spells it.")]
_WHO_OPTIONS = ("by", "author")


class ByCommand(TyperCommand):
    """A command taking ``--by`` and ``--author``: given both, the one typed last is who, as ``--by a --by b``
    is b (click, kubectl), so that a script's ``--by "$ONCALL"`` followed by the user's ``--author bob`` is
    bob; the other is dropped before the command sees it (and is not checked: ``--by '' --by bob`` is bob)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """click's, then the earlier of ``--by`` and ``--author`` left out."""
        # The parser lists every option as typed, each time (click keeps only the last value of each); it
        # consumes its list, which click's own parse below needs whole.
        order = self.make_parser(ctx).parse_args(args=list(args))[2]
        rest = super().parse_args(ctx, args)
        typed = [param.name for param in order if param.name in _WHO_OPTIONS]
        for name in _WHO_OPTIONS if typed else ():
            if name != typed[-1]:
                ctx.params[name] = None
        return rest


def who(by: str | None, author: str | None = None) -> str:
    """Who a command says did it: ``--by`` or ``--author`` (the one typed last: ``ByCommand``), else
    ``$USER``, else the OS user name (``LOGNAME``, the password database), else ``uid N``. A cron job or
    container has no ``$USER``, and every action read "by cli". One given empty (``--by "$ONCALL"`` with the
    variable unset) is refused, naming the option as typed, not taken as left out: it was recorded as
    ``$USER``, and a blank one was serve's 400 (exit 1)."""
    name, given = ("--by", by) if by is not None else ("--author", author)
    if given is not None:
        return written(name, given, f"who does it, or leave {name} out for $USER")
    for variable in NAME_VARIABLES:
        if os.environ.get(variable, "").strip():  # a blank one names nobody: serve refused it, 400 (exit 1)
            return os.environ[variable]
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # no name variable and a uid the password database lacks (a container)
        return f"uid {os.getuid()}"


NAME_VARIABLES = ("USER", "LOGNAME", "LNAME", "USERNAME")
"""Where ``who`` looks for the user's name, in order: ``$USER``, then those ``getpass.getuser()`` reads."""


def written(name: str, text: str, what: str) -> str:
    """``text`` of the option or argument ``name``; an empty or blank one is refused before any request (exit
    2: a usage error, which serve's 400 made an exit 1)."""
    if not text.strip():
        refuse_option(f"{name} {escape(repr(text))}: empty; write {what}")
    return text


def _act(url: str, incident_id: str, action: str, body: dict[str, str], by: str) -> dict[str, Any]:
    """POST ``action`` on the incident, ``by`` (``who``'s answer) as who did it."""
    body = {**body, "by": by}
    inc: dict[str, Any] = api_json("POST", url, incident_path(incident_id, f"/{action}"), dict, json=body)
    return inc


@incidents_app.command("ack", cls=ByCommand)
@gpuwarden_answers
def ack(
    incident_id: str,
    url: UrlOption = "http://127.0.0.1:8080",
    by: ByOption = None,
    author: AuthorOption = None,
) -> None:
    """Acknowledge an incident (needs GPUWARDEN_API_TOKEN); says so when someone already did."""
    inc = _act(url, incident_id, "ack", {}, who(by, author))
    _said(inc)


@incidents_app.command("mitigate", cls=ByCommand)
@gpuwarden_answers
def mitigate(
    incident_id: str,
    action: Annotated[str, typer.Option(help="What is being done, e.g. 'draining node r07-n03'.")],
    url: UrlOption = "http://127.0.0.1:8080",
    by: ByOption = None,
    author: AuthorOption = None,
) -> None:
    """Mark an incident mitigating: someone is working on it (needs GPUWARDEN_API_TOKEN); says so when
    someone already marked the same action."""
    body = {"action": written("--action", action, "what is being done")}
    inc = _act(url, incident_id, "mitigate", body, who(by, author))
    _said(inc)


@incidents_app.command("note", cls=ByCommand)
@gpuwarden_answers
def note(
    incident_id: str,
    text: Annotated[str, typer.Argument(help="The note (timeline, Slack thread, postmortem).")],
    url: UrlOption = "http://127.0.0.1:8080",
    by: ByOption = None,
    author: AuthorOption = None,
) -> None:
    """Add a note to an incident's timeline (needs GPUWARDEN_API_TOKEN)."""
    inc = _act(url, incident_id, "notes", {"text": written("TEXT", text, "the note")}, who(by, author))
    typer.echo(f"{inc['id']}: noted")


@incidents_app.command("silence", cls=ByCommand)
@gpuwarden_answers
def silence(
    incident_id: str,
    duration: Annotated[str, typer.Option("--for", help="How long: 30m, 1h, 1h30m, 2d.")] = "1h",
    url: UrlOption = "http://127.0.0.1:8080",
    by: ByOption = None,
    author: AuthorOption = None,
) -> None:
    """Silence an incident's alerts for a while (needs GPUWARDEN_API_TOKEN); says so when a silence that
    has at least half of that left holds it already."""
    from alerting.silences import parse_duration  # noqa: PLC0415 (only this command needs it)

    try:
        parse_duration(duration, field="--for")
    except InputError as exc:  # serve would refuse it (400): said here, as a bad option
        refuse_option(escape(option_said("--for", duration, exc.message)))
    inc = escape_controls_in(_act(url, incident_id, "silence", {"duration": duration}, who(by, author)))
    if inc.get("changed") is False:  # a silence holds it already: whose, and until when
        _said(inc)
    else:
        typer.echo(f"{inc['id']}: silenced for {duration}")
    for line in lifting(url, inc):
        typer.echo(line)


def lifting(url: str, inc: dict[str, Any]) -> list[str]:
    """The silences holding the incident and how to lift them early: expire each, as ``amtool silence
    expire`` does (serve's ``DELETE /api/v2/silence/{id}``); nothing when none holds it. Said because no
    other command lifts one: once the incident resolved no alert names its silence in ``silencedBy``, and
    ``amtool silence query`` does not list an incident's silences (they have no matchers)."""
    ids = [str(i) for i in inc.get("silence_ids") or ()]
    if not ids:
        return []
    base = hidden_password(url).rstrip("/")
    curls = [
        f'curl -X DELETE -H "Authorization: Bearer ${TOKEN_ENV}" {base}/api/v2/silence/{quote(i, safe="")}'
        for i in ids
    ]
    amtool = f"amtool silence expire {' '.join(ids)}"
    if len(ids) == 1:
        return [f"silence {ids[0]}; to lift it early: {curls[0]} (or {amtool})"]
    return [
        f"silences {', '.join(ids)}; to lift them early, expire each ({amtool}):",
        *(f"  {c}" for c in curls),
    ]


@incidents_app.command("resolve", cls=ByCommand)
@gpuwarden_answers
def resolve(
    incident_id: str,
    url: UrlOption = "http://127.0.0.1:8080",
    by: ByOption = None,
    author: AuthorOption = None,
) -> None:
    """Resolve an incident now, without its quiet period, once none of its alerts fires (needs
    GPUWARDEN_API_TOKEN)."""
    inc = _act(url, incident_id, "resolve", {}, who(by, author))
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
