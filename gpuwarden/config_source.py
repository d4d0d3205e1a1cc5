"""Where a setting came from: the configuration file's line, or the ``GPUWARDEN_`` variable that set it.

An error about a setting names its source, so the fix lands in the right place: a value (or a required field
missing) in a list or section that a variable set is that variable's fault, not the file's. Variables whose
name looks meant for a setting but names none (``GPUWARDEN_SLAK``, ``GPUWARDEN_APII__PORT``) are refused:
pydantic-settings would ignore them silently. Two kinds of such names are not settings and are left alone:
those Kubernetes sets for a Service named ``gpuwarden...`` (``GPUWARDEN_API_PORT=tcp://10.96.0.13:8080``)
and those the file itself reads as secrets (``{env: GPUWARDEN_SLACK_BOT_TOKEN}``).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Collection, Mapping
from typing import Any, get_args

from pydantic import BaseModel, SecretStr
from pydantic_settings import SettingsError

from gpuwarden.config_notify import literal_url_credential
from gpuwarden.errors import ConfigError
from gpuwarden.headers import TOKEN_ENV
from gpuwarden.yamlfile import field_path

PREFIX = "GPUWARDEN_"
ENVIRONMENT = "<environment>"
OTHER_VARIABLES = frozenset({TOKEN_ENV, "GPUWARDEN_URL"})
"""``GPUWARDEN_`` variables read by commands rather than the configuration: serve's token, the CLI's URL."""

Loc = tuple[str | int, ...]


def check_variable_names(
    environ: Mapping[str, str],
    sections: Mapping[str, type[BaseModel]],
    lists: Mapping[str, type[BaseModel]] | None = None,
    referenced: Collection[str] = (),
) -> None:
    """Refuse a ``GPUWARDEN_`` variable meant for a setting whose section does not exist: one with ``__``
    (``GPUWARDEN_APII__PORT``), or one whose name is close to a section's (``GPUWARDEN_SLAK``), is a field's
    (``GPUWARDEN_PORT``) or is a section's and a field's joined by one underscore (``GPUWARDEN_API_PORT``).
    A list of ``lists`` (``webhooks``) is set whole, as JSON: ``GPUWARDEN_WEBHOOKS__0__URL`` sets nothing.
    Other names are left to the tools that read them (``GPUWARDEN_TEST_PORTS``), and so are Kubernetes'
    service links and the variables that the file's secret references name (``referenced``)."""
    lists = lists or {}
    for name in sorted(environ):
        if not name.upper().startswith(PREFIX) or name.upper() in OTHER_VARIABLES:
            continue
        if name in referenced or is_service_link(name, environ[name]):
            continue
        rest = name[len(PREFIX) :].lower()
        section = rest.split("__")[0]
        if section in lists and rest != section:
            raise ConfigError(
                f"{name} sets no setting: {section} is a list, set whole as JSON: "
                f'{PREFIX}{section.upper()}=\'[{{"name": ..., "url": ...}}]\'',
                path=ENVIRONMENT,
            )
        if section in sections or section in lists:
            continue
        fix = _suggestion(rest, sections)
        if "__" in rest or fix:
            listed = ", ".join(sections)
            raise ConfigError(
                f"{name} sets no setting: there is no section {section!r} (sections: {listed}); "
                f"{fix or 'correct or unset it'}",
                path=ENVIRONMENT,
            )


_SERVICE = r"GPUWARDEN(?:_[A-Z0-9]+)*"  # a Service's name upper-cased, its '-' made '_'
_LINK_PORT = rf"{_SERVICE}_PORT_\d+_(?:TCP|UDP|SCTP)"
_SERVICE_LINKS = (  # (name, what Kubernetes writes into it)
    (re.compile(rf"{_SERVICE}_SERVICE_HOST"), "address"),
    (re.compile(rf"{_SERVICE}_SERVICE_PORT(?:_[A-Z0-9]+)*"), "port"),  # a named port: ..._PORT_HTTP
    (re.compile(rf"{_SERVICE}_PORT"), "url"),  # the Service's first port
    (re.compile(_LINK_PORT), "url"),
    (re.compile(rf"{_LINK_PORT}_PROTO"), "protocol"),
    (re.compile(rf"{_LINK_PORT}_PORT"), "port"),
    (re.compile(rf"{_LINK_PORT}_ADDR"), "address"),
)
_LINK_URL = re.compile(r"(?:tcp|udp|sctp)://\[?(?P<address>[0-9A-Fa-f.:]+)\]?:(?P<port>\d+)")


def is_service_link(name: str, value: str) -> bool:
    """Whether a variable is one of those the kubelet sets in every container for each Service of the
    namespace (``enableServiceLinks``, on by default): ``<SVC>_SERVICE_HOST``, ``<SVC>_SERVICE_PORT[_NAME]``,
    ``<SVC>_PORT``, ``<SVC>_PORT_<n>_<PROTO>[_PROTO|_PORT|_ADDR]``. The value must be what Kubernetes writes
    there too, so that ``GPUWARDEN_API_PORT=9000`` (meant for ``GPUWARDEN_API__PORT``) is still refused."""
    kinds = {kind for pattern, kind in _SERVICE_LINKS if pattern.fullmatch(name)}
    url = _LINK_URL.fullmatch(value)
    checks = {
        "address": lambda: _is_address(value),
        "port": lambda: _is_port(value),
        "url": lambda: url is not None and _is_address(url["address"]) and _is_port(url["port"]),
        "protocol": lambda: value in ("tcp", "udp", "sctp"),
    }
    return any(checks[kind]() for kind in kinds)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 1 <= int(text) <= 65535


def _suggestion(rest: str, sections: Mapping[str, type[BaseModel]]) -> str:
    """What a mistyped name probably meant ("" when it does not look meant for a setting)."""
    owners = [s for s, model in sections.items() if rest in model.model_fields]
    if owners:
        choices = [f"{PREFIX}{owner.upper()}__{rest.upper()}" for owner in owners]
        written = choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"
        return f"{rest} is a field of {', '.join(owners)}: write {written}"
    for section, model in sections.items():
        field = rest.removeprefix(f"{section}_")
        if field != rest and field in model.model_fields:
            return f"write {PREFIX}{section.upper()}__{field.upper()} (two underscores between levels)"
    head, _, tail = rest.partition("__")
    close = difflib.get_close_matches(head, list(sections), n=1, cutoff=0.6)
    # The whole name with its section corrected (GPUWARDEN_APII__PORT: GPUWARDEN_API__PORT, not _API).
    return f"did you mean {PREFIX}{close[0].upper()}{f'__{tail.upper()}' if tail else ''}?" if close else ""


def setting_variable(loc: Loc, positions: Mapping[Loc, int], environ: Mapping[str, str]) -> str | None:
    """The ``GPUWARDEN_`` variable that set the setting at ``loc`` or failed to: one that sets it, a list
    holding it (a list replaces the file's whole), or a section or list the file does not reach as deep
    into (a required field missing from it). None: the file (``positions``) or a default is at fault."""
    wanted = tuple(str(part).lower() for part in loc)
    file_depth = max(d for d in range(len(loc) + 1) if d == 0 or loc[:d] in positions)
    best: tuple[int, int, str] | None = None  # (depth reached into loc, length of the name's path, name)
    for name in sorted(environ):
        if not name.upper().startswith(PREFIX) or name.upper() in OTHER_VARIABLES:
            continue
        path = tuple(name[len(PREFIX) :].lower().split("__"))
        common = next((i for i, (a, b) in enumerate(zip(path, wanted, strict=False)) if a != b), None)
        common = min(len(path), len(wanted)) if common is None else common
        if common == 0:
            continue
        depth = common
        if common == len(path):  # it sets loc or what holds it
            reached, replaced = _reach(environ[name], loc[common:])
            if common + reached == len(loc) or replaced:
                return name
            depth += reached
        if best is None or (depth, len(path)) > best[:2]:
            best = (depth, len(path), name)
    return best[2] if best is not None and best[0] > file_depth else None


def _reach(text: str, rest: Loc) -> tuple[int, bool]:
    """How far into ``rest`` a variable's JSON value goes, and whether it went through a list (which
    replaced the file's list whole: what the list lacks is the variable's fault)."""
    try:
        value: Any = json.loads(text)
    except ValueError:
        return 0, False
    reached, replaced = 0, False
    for part in rest:
        if isinstance(value, list):
            replaced = True
            if not (isinstance(part, int) and 0 <= part < len(value)):
                break
            value = value[part]
        elif isinstance(value, dict) and str(part) in value:
            value = value[str(part)]
        else:
            break
        reached += 1
    return reached, replaced


def field_loc(field: str) -> Loc:
    """``alerting.maintenance_windows[0].matchers[1]`` (or pydantic's ``...windows.0...``) as a loc."""
    parts = re.findall(r"\[(\d+)\]|([^.\[\]]+)", field)
    return tuple(int(index) if index else (int(name) if name.isdigit() else name) for index, name in parts)


def located(
    error: ConfigError, loc: Loc, path: str, positions: Mapping[Loc, int], environ: Mapping[str, str]
) -> ConfigError:
    """``error`` (about the setting at ``loc``) naming its source: the variable that set it, else the file
    ``path`` and the line of ``loc`` (or of the nearest setting holding it)."""
    variable = setting_variable(loc, positions, environ)
    if variable is not None:
        return ConfigError(
            f"{error.message} (set by {variable})", path=ENVIRONMENT, field=error.field, outside=error.outside
        )
    line = error.line
    if line is None:
        line = next((positions[loc[:d]] for d in range(len(loc), 0, -1) if loc[:d] in positions), None)
    return ConfigError(
        error.message, path=error.path or path, field=error.field, line=line, outside=error.outside
    )


_SECRET_ENV = {("api", "token"): TOKEN_ENV}  # what serve reads; others: SECTION_FIELD


def literal_secrets(
    raw: dict[str, Any],
    where: str,
    positions: Mapping[Loc, int],
    sections: Mapping[str, type[BaseModel]],
    lists: Mapping[str, type[BaseModel]] | None = None,
) -> list[ConfigError]:
    """Each secret written into the file as a literal: a token there ends up in backups and repositories,
    so the file holds a reference. Checked in every section, and in every item of the ``lists``
    (``webhooks[0].bearer_token``)."""
    found = []
    blocks: list[tuple[Loc, str, type[BaseModel], Any]] = [
        ((section,), section, model, raw.get(section)) for section, model in sections.items()
    ]
    for key, model in (lists or {}).items():
        items = raw.get(key)
        for k, item in enumerate(items if isinstance(items, list) else []):
            label = item.get("name") if isinstance(item, dict) else None
            env_stem = f"{key.removesuffix('s')}_{label}" if isinstance(label, str) else key
            blocks.append(((key, k), env_stem, model, item))
    for loc, env_stem, model, block in blocks:
        if not isinstance(block, dict):
            continue
        for name, info in model.model_fields.items():
            secret = SecretStr in (info.annotation, *get_args(info.annotation))
            value = block.get(name)
            problem = None
            if secret and value is not None and not isinstance(value, dict | list):
                problem = "a secret written into the file"
                if isinstance(value, bytes):  # `!!binary`: pydantic took the decoded bytes, it passed
                    problem += " (!!binary: base64 hides nothing)"
                elif not isinstance(value, str):
                    # A number (`token: 123456789`): pydantic's refusal showed it and said to quote it, to
                    # be refused as a literal then. Taken as the text it is, only this is said, unshown.
                    block[name] = str(value)
            if name == "url" and len(loc) > 1:  # a webhook's URL may hold a password
                problem = literal_url_credential(block.get(name))
            if problem is None:
                continue
            env = _SECRET_ENV.get((str(loc[0]), name), re.sub(r"\W", "_", f"{env_stem}_{name}").upper())
            found.append(
                ConfigError(
                    f"{problem}; write {{env: {env}}} and export {env}",
                    path=where,
                    field=field_path((*loc, name)),
                    line=positions.get((*loc, name)),
                )
            )
    return found


def settings_error(exc: SettingsError, environ: Mapping[str, str]) -> ConfigError:
    """pydantic-settings' error for a ``GPUWARDEN_`` variable of a section or list that is not valid JSON,
    naming the variables that may be at fault (those of the section that JSON does not read, where any),
    the setting where one alone is, and how to write it. pydantic-settings' own words ("error parsing value
    for field "api" from source "EnvSettingsSource"") named its internals, not the fix."""
    found = re.search(r'field "([^"]+)"', str(exc))
    section = found.group(1) if found else ""
    stem = PREFIX + section.upper()
    # The section's own variable and its fields' (`__`), not GPUWARDEN_API_TOKEN beside them.
    suspects = sorted(
        n
        for n in environ
        if section
        and (n.upper() == stem or n.upper().startswith(stem + "__"))
        and not is_service_link(n, environ[n])
    )
    unread = [n for n in suspects if _json_problem(environ[n]) is not None] or suspects
    if len(unread) == 1:
        name = unread[0]
        field = ".".join(name[len(PREFIX) :].lower().split("__"))
        said = f"{name} is not JSON ({_json_problem(environ[name]) or exc})"  # its value may hold a secret
    else:
        field = section
        said = f"one of {', '.join(unread)} is not JSON" if unread else "a GPUWARDEN_ variable is not JSON"
    return ConfigError(
        f'{said}; a variable that sets a list or a section takes JSON: a list as \'["a", "b"]\', a'
        """ section as '{"port": 8080}', quoted for the shell as shown""",
        path=ENVIRONMENT,
        field=field,
    )


def _json_problem(value: str) -> str | None:
    """Why ``value`` is not JSON, in the decoder's words; None when it is."""
    try:
        json.loads(value)
    except ValueError as exc:
        return str(exc)
    return None
