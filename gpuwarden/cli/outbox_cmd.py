"""``gpuwarden outbox``: the notifications a running ``serve`` holds, queueing failed ones again, and dropping
the orphaned ones of a notifier removed for good."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from gpuwarden.cli.consoles import console, err_console, refuse_option, whole_column
from gpuwarden.cli.incidents_cmd import (
    TABLE_OUTPUTS,
    AuthorOption,
    ByCommand,
    ByOption,
    UrlOption,
    add_request_options,
    api_json,
    check_choice,
    gpuwarden_answers,
    incident_path,
    output_option,
    who,
    written,
)
from gpuwarden.cli.listings import say_cut_off, say_none_found
from gpuwarden.cli.numbers import whole_number
from gpuwarden.cli.output_options import choice_metavar
from gpuwarden.cli.tables import print_table
from gpuwarden.clock import shown_text
from gpuwarden.printable import escape_controls, escape_controls_in

# What an empty --incident of list, retry or discard is told to write (serve's 400 made retry's an exit 1).
_INCIDENT_ID = "the incident's id (`gpuwarden incidents list` shows them), or leave --incident out"

outbox_app = typer.Typer(
    help="Notifications (Slack, webhooks) a running `gpuwarden serve` holds: waiting, sent, failed.",
    no_args_is_help=True,
)
add_request_options(outbox_app)
STATUSES = ("pending", "sending", "sent", "failed", "orphaned", "discarded")
DISCARDABLE = ("orphaned", "failed")


MOST_MESSAGES = 1_000_000
"""What serve lists at most (``gpuwarden.outbox_api.MAX_MESSAGES``; not imported: the CLI starts without
the API): what ``--limit 0`` asks for."""


@outbox_app.command("list")
@gpuwarden_answers
def list_messages(
    url: UrlOption = "http://127.0.0.1:8080",
    status: Annotated[
        str | None,
        typer.Option(
            metavar=choice_metavar(STATUSES),
            help="Only this status: pending, sending, sent, failed, orphaned, discarded.",
        ),
    ] = None,
    incident: Annotated[str | None, typer.Option(help="Only this incident's messages.")] = None,
    limit: Annotated[
        int, whole_number("--limit", 0, MOST_MESSAGES, help="At most this many, the newest; 0 lists all.")
    ] = 100,
    output: Annotated[str, output_option(TABLE_OUTPUTS, "table (or text) or json")] = "table",
) -> None:
    """Count messages by status and list the newest, with why each failed one failed."""
    status = check_choice("--status", status, STATUSES)
    params: dict[str, str | int] = {"limit": limit or MOST_MESSAGES}
    if status is not None:
        params["status"] = status
    if incident is not None:  # empty, it listed nothing and said so, as if the incident had no messages
        params["incident"] = written("--incident", incident, _INCIDENT_ID)
    data: dict[str, Any] = api_json("GET", url, "/api/v1/outbox", dict, params=params)
    if incident is not None and not data["messages"] and "/" not in incident:
        # serve filters by incident: a typo listed nothing ("No messages found", exit 0) where retry and
        # discard say there is no such incident (404, exit 1). Asked only when nothing came back.
        # Said as they say it, naming the option given: serve's own answer here named its path's `id`.
        absent = f"incident: no incident {incident!r} (incidents list shows them)"
        api_json("GET", url, incident_path(incident), dict, absent=absent)
    # serve counts only the statuses it holds messages in: a script reads every one, 0 where none, as the
    # table shows them (a status a newer serve adds is kept, after these).
    data["counts"] = {**{s: 0 for s in STATUSES}, **data["counts"]}
    if output == "json":
        typer.echo(json.dumps(data, indent=2))
        say_cut_off(len(data["messages"]), _matching(data["counts"], status))  # as below the table
        return
    data = escape_controls_in(data)  # a receiver's error text: shown, never obeyed by the terminal
    counts = data["counts"]
    console.print(", ".join(_count(s, counts[s], data.get("held", 0)) for s in STATUSES), markup=False)
    for name, pause in data.get("paused", {}).items():  # a serve before this release says nothing of it
        left, until = pause["seconds_left"], pause["until"]
        err_console.print(
            f"{name} is paused by a rate limit for {left:.0f} s more (until {shown_text(until)}): its"
            " messages wait, none is lost",
            markup=False,
        )
    for name, block in data.get("blocked", {}).items():  # a serve before this release says nothing of it
        err_console.print(
            f"{name} holds all of its messages since {shown_text(block['since'])}, none failed: every call"
            f" was refused ({block['reason']}); they go out in order once a call goes through (tried again"
            f" at {shown_text(block['next_try'])})",
            markup=False,
        )
    if not data["messages"]:
        say_none_found("messages", {"status": status, "incident": incident})
        return
    messages = data["messages"]
    # Whole on one line (``whole_column``): the names and ids the next command takes (`outbox discard
    # --notifier`, `--incident`) and the words read first; the rest folded, never cut: at an 80-column
    # terminal rich cut webhook:ops to "webh…" and "failed" to "fail…".
    table = Table(
        whole_column("id", (str(m["id"]) for m in messages)),
        whole_column("notifier", (m["notifier"] for m in messages)),
        whole_column("incident", (m["incident_id"] for m in messages)),
        whole_column("event", (m.get("event", "") for m in messages)),
        whole_column("status", (m["status"] for m in messages)),
        Column("attempts", overflow="fold"),
        # When a pending one goes: a webhook's held update (``edit_interval_seconds``) or a retry's backoff,
        # not a message stuck.
        Column("next attempt", overflow="fold"),
        Column("last error", overflow="fold", min_width=12),  # why it failed: never cut short
    )
    rows: list[tuple[str, ...]] = [
        (
            str(m["id"]),
            m["notifier"],
            m["incident_id"],
            m.get("event", ""),
            m["status"],
            str(m["attempts"]),
            _next_attempt(m),
            m["last_error"] or "",
        )
        for m in messages
    ]
    if console.width < _table_width(table):
        _print_records(table, rows)
    else:
        for row in rows:
            table.add_row(*row)
        print_table(console, table)  # a receiver's error text is data, not markup: `[/]`, a last `\` as sent
    _say_after_listing(counts, len(data["messages"]), status)


# The least width a folded column keeps (as at an 80-column terminal): narrower, rich gave the folded columns
# no width at all (below about 70 columns) and dropped attempts, next attempt and last error without a word.
_FOLDED_MIN_WIDTH = 3


def _table_width(table: Table) -> int:
    """The least terminal width at which ``table`` shows every column: its whole columns, each folded one at
    least ``_FOLDED_MIN_WIDTH`` wide, and the borders and padding (3 a column, and 1)."""
    widths = ((column.min_width or 0) if column.no_wrap else _FOLDED_MIN_WIDTH for column in table.columns)
    return sum(widths) + 3 * len(table.columns) + 1


def _print_records(table: Table, rows: list[tuple[str, ...]]) -> None:
    """Each message as a block of ``column: value`` lines, for a terminal too narrow for the table: every
    column kept, nothing cut (the terminal wraps a long error)."""
    headers = [str(column.header) for column in table.columns]
    width = max(len(header) for header in headers)
    for index, row in enumerate(rows):
        if index:
            console.print("", markup=False)
        for header, value in zip(headers, row, strict=True):
            console.print(f"{header + ':':<{width + 1}} {value}".rstrip(), markup=False)


def _next_attempt(message: dict[str, Any]) -> str:
    """When a pending message goes: its own time, or, behind an earlier message of its incident that has not
    gone (backing off, being sent), after that one: its own time passed long ago read as a message stuck."""
    if message["status"] != "pending":
        return ""
    behind = message.get("waiting_behind")  # a serve before this release says nothing of it
    if behind:
        due = behind.get("next_attempt_at")
        when = f"its next attempt {shown_text(due)}" if due else f"{behind['status']} now"
        return f"after message {behind['id']} ({when})"
    due = message.get("next_attempt_at")
    return shown_text(due) if due else ""


def _count(status: str, count: int, held: int) -> str:
    """``status`` and its count, the pending with how many of them are held on purpose (a webhook's update
    waiting out ``edit_interval_seconds``, ``held`` in ``gpuwarden_outbox_messages``): not stuck."""
    return f"{status} {count} (held {held})" if status == "pending" and held else f"{status} {count}"


def _matching(counts: dict[str, int], status: str | None) -> int:
    """How many messages the filters match: the counts are of ``--incident``'s messages already."""
    return counts.get(status, 0) if status is not None else sum(counts.values())


def _say_after_listing(counts: dict[str, int], shown: int, status: str | None) -> None:
    """On stderr, below the table: that it shows only the newest of more, and what failed and orphaned
    messages wait for."""
    say_cut_off(shown, _matching(counts, status))
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
    output: Annotated[str, output_option(TABLE_OUTPUTS, "table (or text) or json")] = "table",
) -> None:
    """Queue failed messages again (after fixing the Slack token, scopes or channel, or a webhook)."""
    body = {} if incident is None else {"incident": written("--incident", incident, _INCIDENT_ID)}
    data: dict[str, Any] = api_json("POST", url, "/api/v1/outbox/retry", dict, json=body)
    if output == "json":  # serve's answer, {"requeued", "overtaken"}: the note below is its second field
        typer.echo(json.dumps(data, indent=2))
        return
    console.print(f"queued again: {data['requeued']}")
    if data["overtaken"]:
        err_console.print(overtaken_said(data["overtaken"]))


def overtaken_said(count: int) -> str:
    """Why ``count`` failed messages stay failed, for Slack and webhooks alike (a webhook-only serve was told
    of a Slack message it never had)."""
    many = count != 1
    return (
        f"{count} failed message{'s' if many else ''} stay{'' if many else 's'} failed: a later message of"
        f" {'their' if many else 'its'} incident was sent since, and sending {'them' if many else 'it'} now"
        " would set what the incident shows (its Slack message, a webhook receiver's copy) back to what it"
        " said then"
    )


@outbox_app.command("discard", cls=ByCommand)
@gpuwarden_answers
def discard(
    notifier: Annotated[
        str, typer.Option(help="The notifier whose messages go, as `outbox list` names it (webhook:NAME).")
    ],
    url: UrlOption = "http://127.0.0.1:8080",
    *,
    status: Annotated[
        list[str] | None,
        typer.Option(
            metavar=choice_metavar(DISCARDABLE),
            help="Which messages: orphaned (the default), failed; repeat the option for both.",
        ),
    ] = None,
    incident: Annotated[str | None, typer.Option(help="Only this incident's messages.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    by: ByOption = None,
    author: AuthorOption = None,
    output: Annotated[str, output_option(TABLE_OUTPUTS, "table (or text) or json")] = "table",
) -> None:
    """Drop a notifier's orphaned messages for good (a notifier removed from the config for good); they are
    marked discarded, with who and when, and never sent, even if the notifier comes back."""
    statuses = [given.casefold() for given in status or ["orphaned"]]
    for given in statuses:
        if given not in DISCARDABLE:
            refuse_option(
                f"--status {escape(repr(given))}: only {' and '.join(DISCARDABLE)} messages"
                " can be discarded (pending and sending ones are a configured notifier's backlog)"
            )
    body: dict[str, Any] = {
        "notifier": written("--notifier", notifier, "the notifier, as `outbox list` names it (webhook:NAME)"),
        "statuses": statuses,
        "by": who(by, author),
    }
    if incident is not None:
        body["incident"] = written("--incident", incident, _INCIDENT_ID)
    if not yes:
        planned = _discard(url, {**body, "dry_run": True})
        if not planned["total"]:
            _said_discarded(planned, output)
            return
        _confirm(planned)
        done = _discard_asked(url, body, planned)
        _said_discarded(done, output)
        _say_if_not_as_confirmed(planned, done)
        return
    _said_discarded(_discard(url, body), output)


def _discard(url: str, body: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = api_json("POST", url, "/api/v1/outbox/discard", dict, json=body)
    return answer


IDS_PER_REQUEST = 5_000
"""Message ids sent in one discard request: 100,000 orphaned messages' ids passed serve's 1 MiB body."""


def _discard_asked(url: str, body: dict[str, Any], planned: dict[str, Any]) -> dict[str, Any]:
    """Discard the messages the question counted (the dry run's ``ids``), none that failed or was orphaned
    since; in parts of ``IDS_PER_REQUEST``, their answers added up. A serve before this release lists no ids:
    asked as before, for what matches when the answer comes."""
    ids = planned.get("ids")
    if not isinstance(ids, list):
        return _discard(url, body)
    done: dict[str, Any] = {"notifier": planned["notifier"], "discarded": {}, "total": 0, "dry_run": False}
    done["ids"] = []
    for start in range(0, len(ids), IDS_PER_REQUEST):
        part = _discard(url, {**body, "ids": ids[start : start + IDS_PER_REQUEST]})
        for status, count in part["discarded"].items():
            done["discarded"][status] = done["discarded"].get(status, 0) + count
        done["total"] += part["total"]
        done["ids"] += part["ids"]
    return done


def _confirm(planned: dict[str, Any]) -> None:
    """Ask before dropping; no answer (stdin closed) or no is a refusal that changes nothing."""
    what = ", ".join(f"{n} {s}" for s, n in planned["discarded"].items() if n)
    question = f"discard {what} messages of {planned['notifier']!r} for good? They will never be sent"
    if not _agreed(escape_controls(question)):
        err_console.print("[red]error:[/red] nothing discarded: answer y, or pass --yes")
        raise typer.Exit(1)


def _agreed(question: str) -> bool:
    """``QUESTION [y/N]:`` on stderr, and whether the answer is yes; no answer (stdin closed, Ctrl-C) is no.
    click's confirm asks on stderr but reads the answer with ``input(" ")``, whose space went to stdout, the
    first character of ``-o json``'s document and of the table."""
    while True:
        err_console.print(f"{question} [y/N]: ", end="", markup=False, highlight=False, soft_wrap=True)
        try:
            line = sys.stdin.readline()
        except KeyboardInterrupt:
            err_console.print()
            return False
        answer = line.strip().lower()
        if not line or answer in ("", "n", "no"):
            if not line:  # stdin closed: the question's line ends here
                err_console.print()
            return False
        if answer in ("y", "yes"):
            return True
        err_console.print("Error: invalid input", markup=False, highlight=False)


def _say_if_not_as_confirmed(planned: dict[str, Any], done: dict[str, Any]) -> None:
    """On stderr, when serve discarded other counts than the question said: some it counted were queued
    again (or sent) between the two requests, or, from a serve before this release, which takes no list of
    messages to discard, more failed or were orphaned meanwhile and went too."""
    if planned["discarded"] == done["discarded"]:
        return
    said = ", ".join(f"{s} {n}" for s, n in planned["discarded"].items() if n)
    err_console.print(
        f"note: discarded {done['total']} messages, not the {planned['total']} ({said}) the question counted:"
        " messages of this notifier changed meanwhile; `gpuwarden outbox list --status discarded` shows"
        " which went",
        markup=False,
    )


def _said_discarded(answer: dict[str, Any], output: str) -> None:
    if output == "json":
        typer.echo(json.dumps(answer, indent=2))
        return
    counts = ", ".join(f"{s} {n}" for s, n in answer["discarded"].items())
    console.print(
        f"discarded {answer['total']} messages of {answer['notifier']!r} ({counts})",
        markup=False,
    )


def register(app: typer.Typer) -> None:
    """Add the ``outbox`` group to the root app."""
    app.add_typer(outbox_app, name="outbox")
