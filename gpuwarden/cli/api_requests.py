"""The CLI's requests to a running ``gpuwarden serve``: ``--url`` and ``--request-timeout``, the request and
its answer, and every way it fails (unreachable, TLS, refused, not gpuwarden) said as a person reads it, exit
1; every command that calls serve's API (``incidents``, ``outbox``, ``inventory``, ``sim``) uses them.

httpx (~0.2 s) is imported by the commands that call the API, not by every command.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec
from urllib.parse import unquote, urlsplit

import typer
from rich.markup import escape

from gpuwarden.cli.consoles import err_console
from gpuwarden.cli.foreign_answers import foreign_said
from gpuwarden.cli.numbers import number
from gpuwarden.cli.tls_trust import ca_file_problem, tls_hint
from gpuwarden.headers import (
    FIELD_HEADER,
    LAG_HEADER,
    STANDBY_ACTIVE_ELSEWHERE,
    STANDBY_HEADER,
    TOKEN_ENV,
    token_missing,
    token_problem,
)
from gpuwarden.redaction import hidden_password, quoting_only
from gpuwarden.route_prefix import PREFIX_NOTE
from gpuwarden.urls import plain_http_host, url_problem, verify_tls

if TYPE_CHECKING:
    import httpx

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


UrlOption = Annotated[
    str, typer.Option("--url", envvar="GPUWARDEN_URL", help="Base URL of `gpuwarden serve`.")
]


def checked_url(url: str, envvar: str | None = None) -> str:
    """``url`` if requests can be sent to it; else ``error: --url URL: not a valid URL (why)``, exit 2,
    naming ``envvar`` instead where the URL is that variable's value (the option's fallback)."""
    problem = _blanks(url) or url_problem(url) or _not_a_base(url)
    if problem is not None:
        shown = hidden_password(url)  # serve may sit behind a proxy that takes a password or a token
        origin = _origin(url, envvar)
        err_console.print(
            f"[red]error:[/red] {origin} {escape(repr(shown))}: not a valid URL"
            f" ({escape(quoting_only(problem, url, shown))})",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    return url


def _origin(url: str, envvar: str | None = "GPUWARDEN_URL") -> str:
    """Where ``url`` was given: ``envvar`` where it is that variable's value (the option's fallback), else
    ``--url``."""
    return envvar if envvar is not None and os.environ.get(envvar) == url else "--url"


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


UNANSWERED_WRITE = (
    "; serve may still carry it out (it waits its turn behind other writes): look (incidents show,"
    " outbox list) before sending it again, or a note is stored twice"
)
"""Said of a write that timed out or was interrupted (Ctrl-C): the operator's retry of a note stored after all
added it a second time."""


def api_request(
    method: str, url: str, path: str, *, absent: str | None = None, **kwargs: Any
) -> httpx.Response:
    """``method`` ``path`` of serve at ``url``; every failure said, exit 1 (2 for a bad token).

    ``absent``: what serve's 404 for a thing it does not hold says instead of its own words, where the caller
    asked on behalf of an option (``outbox list --incident`` asks ``/api/v1/incidents/ID``: serve's ``id:``
    named no option the user gave); a 404 for a path serve has no route for keeps its own, with its hint."""
    checked_url(url, envvar="GPUWARDEN_URL")
    headers = kwargs.pop("headers", {})
    token = os.environ.get(TOKEN_ENV)
    if token:
        # As serve and anomaly run refuse it: with blanks around it h11 refused the header ("cannot reach"
        # serve, the token printed after it); with other characters httpx raised UnicodeEncodeError.
        problem = token_problem(token)
        if problem is not None:
            err_console.print(f"[red]error:[/red] {TOKEN_ENV} {problem}")
            raise typer.Exit(2)
        headers["Authorization"] = f"Bearer {token}"
        _warn_plain_http(url)
    import httpx  # noqa: PLC0415 - see TYPE_CHECKING above

    timeout = settings.timeout
    try:
        response = httpx.request(
            method, url.rstrip("/") + path, headers=headers, timeout=timeout, verify=verify_tls(url), **kwargs
        )
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing listens there (or a standby's port)
        err_console.print(
            f"[red]error:[/red] cannot connect to {escape(hidden_password(url))}: {escape(str(exc))}"
            f"{tls_hint(url, str(exc)) or '; is `gpuwarden serve` running there? (--url or GPUWARDEN_URL)'}"
        )
        raise typer.Exit(1) from exc
    except httpx.TimeoutException as exc:  # connected: serve took the request and did not answer in time
        err_console.print(
            f"[red]error:[/red] timed out after {timeout:g} s waiting for an answer from"
            f" {escape(hidden_password(url))}"
            " (raise --request-timeout, or look at serve's log and /-/ready)"
            f"{UNANSWERED_WRITE if method != 'GET' else ''}"
        )
        raise typer.Exit(1) from exc
    except httpx.HTTPError as exc:
        said = str(exc).replace(token, "***") if token else str(exc)  # a header's error quotes its value
        err_console.print(f"[red]error:[/red] cannot reach {escape(hidden_password(url))}: {escape(said)}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:  # Ctrl-C while serve held the request: still 130, but a write is not undone
        if method != "GET":
            err_console.print(f"[red]error:[/red] interrupted before serve answered{UNANSWERED_WRITE}")
        raise
    except OSError as exc:  # httpx loads SSL_CERT_FILE before connecting: a missing or non-PEM file raised
        problem = ca_file_problem(exc)
        if problem is None:
            raise
        err_console.print(f"[red]error:[/red] {escape(problem)}")
        raise typer.Exit(2) from exc
    if response.status_code >= 400:
        refusal = _refusal(response, token, url, path)
        if absent is not None and _held_nothing(response):
            refusal = f"HTTP 404: {absent}"
        err_console.print(f"[red]error:[/red] {escape(refusal)}")
        raise typer.Exit(1)
    lag = response.headers.get(LAG_HEADER)
    if lag is not None:  # a listing of 4 incidents while 1,255 were coming said nothing of it
        err_console.print(
            f"[yellow]warning:[/yellow] serve was still applying {escape(lag)} bytes of alerts it had taken;"
            " this answer may be behind them: ask again shortly (serve's /api/v1/ingest/status shows the lag)"
        )
    return response


_WARNED_HOSTS: set[str] = set()  # the hosts warned of in this process: a command's next request says no more


def _warn_plain_http(url: str) -> None:
    """Warn, once per host, that the token goes to ``url`` over plain http to another machine, as ``config
    validate`` warns of Slack's and the webhooks' tokens: anyone on the path can read it and write with it."""
    host = plain_http_host(url)
    if host is None or host in _WARNED_HOSTS:
        return
    _WARNED_HOSTS.add(host)
    err_console.print(
        f"[yellow]warning:[/yellow] {TOKEN_ENV} goes to {escape(host)} over plain http, readable on the way;"
        " use an https --url (serve with --web.config.file, or a TLS proxy in front of it), or run this on"
        " serve's machine with a"
        " localhost --url",
        soft_wrap=True,
    )


def _refusal(response: httpx.Response, token: str | None, url: str, path: str) -> str:
    """What an error answer says, and what to check when that alone does not help: a 401 sent without a
    token, an answer that is not gpuwarden's (a plain 404 said "HTTP 404: " and no more), serve's "no route"
    under a ``url`` with a path, or serve failing (5xx); the last three name ``url``, which the line did not
    (``HTTP 502: <html>...``, ``HTTP 404: path: no route for GET /foo/api/v1/incidents``)."""
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
        message, ours = foreign_said(response.text) or "an empty answer", False
    said = f"HTTP {response.status_code}: {message}"
    if response.status_code == 401 and not token:
        return f"{said}; {token_missing(token)}"
    if response.status_code == 401 and ours:  # one was sent: not the one serve takes
        return (
            f"{said}; the GPUWARDEN_API_TOKEN sent is not the one this serve takes (its own"
            " GPUWARDEN_API_TOKEN, or api.token)"
        )
    shown = hidden_password(url)
    if not ours:
        return f"{said} (not gpuwarden's answer, from {shown}: is --url a gpuwarden serve?)"
    base = _base_of(url, path, message) if _no_route(response, data) else None
    if base is not None:  # serve saw the path, less what a proxy in front of it strips
        given = f"{_origin(url)} {shown}"
        if PREFIX_NOTE in message and base == url.rstrip("/"):  # the prefix given was taken off on the way
            return (
                f"{said}; {given} holds it, so a proxy in front of serve strips it: make the proxy forward"
                " the path as it came, or unset serve's api.route_prefix"
            )
        if PREFIX_NOTE in message:  # outside serve's api.route_prefix
            return f"{said}; {given} is not serve's base URL: give {hidden_password(base)}"
        rest = "the path" if urlsplit(base).path in ("", "/") else "the rest of the path"
        return f"{said}; {given} is not serve's base URL: give {hidden_password(base)}, without {rest}"
    standby = response.headers.get(STANDBY_HEADER)
    if standby is not None:  # "its log says more" sent the operator to a log that said the same
        return f"{said} ({_standby_hint(shown, standby)})"
    if response.status_code >= 500:
        return f"{said} (from serve at {shown}; its log says more)"
    return said


def _standby_hint(shown: str, kind: str) -> str:
    """What to do about a standby's refusal (``STANDBY_HEADER``: ``kind``), which ``shown`` answered: send
    the command to the active serve, or, where the standby cannot ask the store, read the standby's log."""
    if kind == STANDBY_ACTIVE_ELSEWHERE:
        return (
            f"{shown} is a standby serve: give --url, or GPUWARDEN_URL, the active serve's address, or the"
            " one address in front of both"
        )
    return (
        f"{shown} is a standby serve that cannot ask the store: its log, the lines `instance lock: standby,"
        " waiting: ...`, names the store's host and user and the store's error"
    )


def _held_nothing(response: httpx.Response) -> bool:
    """Whether the answer is serve's 404 for a thing it does not hold: not one for a path it has no route
    for (``_no_route``), nor another server's."""
    try:
        data = response.json()
    except ValueError:
        return False
    ours = isinstance(data, dict) and isinstance(data.get("error"), str)
    return response.status_code == 404 and ours and not _no_route(response, data)


def _no_route(response: httpx.Response, data: object) -> bool:
    """Whether the answer is serve's 404 for a path it has no route for (its field ``path``)."""
    field = data.get("field") if isinstance(data, dict) else None
    return response.status_code == 404 and "path" in (field, response.headers.get(FIELD_HEADER))


def _base_of(url: str, path: str, message: str) -> str | None:
    """The base URL to give instead of ``url``, whose request for ``path`` serve answered "no route for
    METHOD SEEN" (``message``): ``url`` without its path (``http://host:8080`` of ``http://host:8080/api/v2``),
    but with the prefix that a proxy in front of serve strips (``http://proxy/gpuwarden`` of
    ``http://proxy/gpuwarden/api/v2``: serve saw ``/api/v2/...``); None for a ``url`` without a path. SEEN
    outside serve's ``api.route_prefix``: the URL's scheme and host with that prefix (``http://host:8080``,
    ``http://host:8080/other``: ``http://host:8080/gpuwarden``), which a proxy forwards unstripped."""
    split = urlsplit(url)
    seen, outside, served = message.partition(" no route for ")[2].partition(" ")[2].partition(PREFIX_NOTE)
    if outside:
        return f"{split.scheme}://{split.netloc}{served.partition(' ')[0]}"
    if not split.path.strip("/"):
        return None
    asked = unquote(urlsplit(url.rstrip("/") + path).path)
    prefix = asked.removesuffix(seen).rstrip("/") if seen and asked.endswith(seen) else ""
    return f"{split.scheme}://{split.netloc}{prefix}"


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
