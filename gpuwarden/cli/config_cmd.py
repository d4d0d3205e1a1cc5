"""``gpuwarden config``: validate and show the configuration."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from gpuwarden.cli.consoles import (  # one line per error: paths and file:line stay whole
    err_console,
    print_problems,
)
from gpuwarden.cli.web_config import VALIDATE_WEB_CONFIG_OPTION, plain_http_warning
from gpuwarden.errors import ConfigError
from gpuwarden.redaction import MASK

Loc = tuple[str | int, ...]
"""A setting's keys and list indexes (``gpuwarden.config_source.Loc``, not imported here: see validate)."""

config_app = typer.Typer(help="Validate and show configuration.", no_args_is_help=True)


@config_app.command("validate")
def validate(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="YAML configuration file; none: the defaults and GPUWARDEN_ variables alone (unless"
            " --web.config.file is given alone)."
        ),
    ] = None,
    web_config_file: Annotated[Path | None, VALIDATE_WEB_CONFIG_OPTION] = None,
) -> None:
    """Check a configuration file (and GPUWARDEN_ environment overrides) as serve, exporter and anomaly run
    would, and the OTEL_* variables as inference-server would; exit 1 listing every problem found, in the
    file's order. Warnings (a maintenance window that already ended) leave it at 0. Without a file, what
    they run with given no --config, as config show prints it. With --web.config.file, that file too, as
    exporter, serve and inference-server check it at start; given alone, that file alone (as promtool check
    web-config checks it)."""
    valid = True
    if path is not None or web_config_file is None:
        valid = _validate_config(path)
    if web_config_file is not None:
        valid = _validate_web_config(web_config_file) and valid
    if not valid:
        raise typer.Exit(1)


def _validate_web_config(path: Path) -> bool:
    """Check the web configuration file at ``path`` as the servers do at start: its problem said, False."""
    from gpuwarden.webconfig import load_web_config  # noqa: PLC0415 - see _validate_config

    try:
        web = load_web_config(path)
    except ConfigError as exc:
        print_problems(exc)
        return False
    warning = plain_http_warning(web)
    if warning is not None:
        err_console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    typer.echo(f"{path}: ok")
    return True


def _validate_config(path: Path | None) -> bool:
    """Check the configuration file at ``path`` (None: the defaults and the variables): each problem said,
    False when there is one."""
    # Imported here: `gpuwarden --help` and the HTTP commands must start without the configuration model.
    from exporters.span_settings import resolve_tracing  # noqa: PLC0415
    from gpuwarden.cli.preflight import check_config, check_starts  # noqa: PLC0415
    from gpuwarden.config import examine_config  # noqa: PLC0415
    from gpuwarden.config_problems import in_file_order  # noqa: PLC0415

    try:
        report = examine_config(path)
    except ConfigError as exc:  # the file cannot be read or parsed: nothing else can be checked
        print_problems(exc.in_file(str(path)))  # only a file's reading raises it: path is set
        return False
    warnings: list[ConfigError] = []
    cfg = report.cfg
    if cfg is not None:  # built without any setting at fault: checks of the others still say something
        problems, warned = check_config(cfg)
        report.add(problems)
        warnings = in_file_order(report.relevant(warned))
        # What stops serve or anomaly run at start, each naming its command; then the OTEL_* variables.
        report.add(check_starts(cfg, os.environ))
        if not report.doubts("tracing"):
            try:  # the OTEL_* variables inference-server would refuse at start, with its message
                spans = resolve_tracing(cfg.tracing, os.environ)
            except ConfigError as exc:  # a tracing setting: at its line
                report.add([exc])
            except ValueError as exc:
                report.problems.append(ConfigError(str(exc)))
            else:  # and what it would warn of
                if spans.warning is not None:
                    warnings.append(ConfigError(spans.warning))
    error = report.error()
    if error is not None:
        print_problems(error)
    for warning in warnings:  # serve would start, and log the same
        err_console.print(f"[yellow]warning:[/yellow] {escape(str(warning))}")
    if error is not None:
        return False
    typer.echo(f"{path if path is not None else 'no file (defaults and GPUWARDEN_ variables)'}: ok")
    return True


@config_app.command("show")
def show(
    path: Annotated[Path | None, typer.Argument(help="YAML configuration file.")] = None,
) -> None:
    """Print the effective configuration as JSON, secrets masked (a value read from `{env: NAME}` too,
    unless shown as a URL's scheme and host or without its password); a secret whose variable is unset is
    shown as `<unset: set NAME>` (`config validate` and the commands that read it require it)."""
    from gpuwarden.config import load_config  # noqa: PLC0415 - see validate

    references = _references(path)
    unset = {trail: ref for trail, ref in references.items() if not os.environ.get(ref[1], "").strip()}
    placeholders = dict.fromkeys((name for _, name in unset.values()), UNSET_PLACEHOLDERS[0])
    for fallback in (*UNSET_PLACEHOLDERS[1:], None):
        try:
            cfg = load_config(path, {**os.environ, **placeholders})
            break
        except ConfigError as exc:
            refused = {unset[p.field][1] for p in (exc, *exc.more) if p.field in unset}
            if fallback is None or not refused:  # a real problem of the file: each one said
                print_problems(exc)
                raise typer.Exit(1) from exc
            placeholders.update(dict.fromkeys(refused, fallback))  # a setting that is no URL: try a word
    shown = cfg.model_dump(mode="json")
    for loc, name in unset.values():
        _mark(shown, loc, f"<unset: set {name}>")
    for trail, (loc, name) in references.items():
        value = os.environ.get(name, "")
        if trail not in unset and _at(shown, loc) in (value, value.strip()):
            _mark(shown, loc, MASK)  # a value shown whole (a header's): masked as a token is
    typer.echo(json.dumps(shown, indent=2))
    if unset:
        names = ", ".join(sorted({name for _, name in unset.values()}))
        err_console.print(
            f"note: unset secrets ({escape(names)}) are shown as <unset: ...>; `gpuwarden config validate`"
            " and the commands that read them require them",
            soft_wrap=True,
        )


# What an unset secret is replaced by while loading, for the load to pass: a URL (a webhook's url, a
# Prometheus URL), else a word (a token, a store path). Never shown: the marker takes its place.
UNSET_PLACEHOLDERS = ("http://unset.invalid", "unset")


def _references(path: Path | None) -> dict[str, tuple[Loc, str]]:
    """``{env: NAME}`` references of the file: the setting's path as load errors write it
    (``webhooks[0].url``) -> (its keys and indexes in the file, NAME)."""
    from gpuwarden.yamlfile import read_yaml  # noqa: PLC0415 - see validate

    if path is None:
        return {}
    try:
        raw, _ = read_yaml(path)
    except ConfigError:
        return {}  # load_config says what is wrong with the file
    found: dict[str, tuple[Loc, str]] = {}

    def walk(value: object, loc: Loc, trail: str) -> None:
        if isinstance(value, dict):
            if set(value) == {"env"} and isinstance(value["env"], str):
                found[trail] = (loc, value["env"])
                return
            for key, item in value.items():
                walk(item, (*loc, key), f"{trail}.{key}" if trail else str(key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, (*loc, index), f"{trail}[{index}]")

    walk(raw, (), "")
    return found


def _mark(shown: dict[str, object], loc: Loc, marker: str) -> None:
    """Put ``marker`` at ``loc`` (``("slack", "bot_token")``, ``("anomaly", "presence_queries", 1)``) in the
    dumped configuration. Keys, not a dotted path: a list item or a header named ``X.Team`` is marked too."""
    if not loc:
        return
    node = _at(shown, loc[:-1])  # None: not in the dump (a setting it leaves out), nothing to mark
    if isinstance(node, dict) or _holds(node, loc[-1]):
        node[loc[-1]] = marker


def _at(shown: dict[str, object], loc: Loc) -> Any:
    """The dumped value at ``loc``, or None when the dump leaves it out."""
    node: Any = shown
    for key in loc:
        if not _holds(node, key):
            return None
        node = node[key]
    return node


def _holds(node: object, key: str | int) -> bool:
    """Whether ``node[key]`` is there: a mapping's key, or a list's index."""
    if isinstance(node, dict):
        return key in node
    return isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)


def register(app: typer.Typer) -> None:
    """Add the ``config`` group to the root app."""
    app.add_typer(config_app, name="config")
