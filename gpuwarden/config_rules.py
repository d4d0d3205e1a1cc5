"""Rules the configuration's values follow beyond their types: no unknown keys or infinite numbers
(``Section``), upper bounds, what a secret or a URL may look like, the simulated fleet's size.

Kept out of ``gpuwarden.config`` (the models) so that the CLI applies the same rules to values that come
from elsewhere (``GPUWARDEN_API_TOKEN``, ``--simulate``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from gpuwarden.errors import ConfigError, InputError
from gpuwarden.headers import secret_problem, token_problem
from gpuwarden.limits import MAX_GPUS_PER_NODE, MAX_SIM_NODES
from gpuwarden.numerals import NUMBER, WHOLE_NUMBER
from gpuwarden.redaction import hidden_password, quoting_only, shown_url
from gpuwarden.urls import url_problem


class Section(BaseModel):
    """Base of config sections: unknown keys are errors, so typos never pass silently; so are infinite and
    NaN numbers (YAML's ``.inf``), which no setting means and which broke timers and deadlines at run time;
    and a number given as text (quoted in the file, a ``GPUWARDEN_`` variable) is read as the command
    line's options read one (``gpuwarden.numerals``): ``' 5'`` and ``'1_000'`` were taken here and refused
    by ``--interval``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_written_as_options_take_them(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is not None:
            unwritten_number(cls.model_fields[info.field_name].annotation, value)
        return value


def unwritten_number(annotation: Any, value: Any, loc: tuple[str | int, ...] = ()) -> None:
    """Raise pydantic's parsing error for the first text of ``value`` that ``annotation`` wants as a number
    (an ``int`` or ``float`` alone, optional, or inside a list, tuple or mapping) and that is not written as
    an option takes one, or that is a boolean; anything else is left to the field's own validation. The
    error's ``loc`` is the item's within ``value`` (a mapping's key, a list's index), so that its own line
    is named, not the field's."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation in (int, float):
        problem = _number_problem(annotation is int, value)
        if problem is not None:
            detail = InitErrorDetails(type=problem, loc=loc, input=value)
            raise ValidationError.from_exception_data("number", [detail])
    elif origin is Annotated or (origin in (Union, UnionType) and type(None) in args and len(args) == 2):
        unwritten_number(next(arg for arg in args if arg is not type(None)), value, loc)
    elif origin is dict and isinstance(value, dict):
        for key, item in value.items():
            unwritten_number(args[1], item, (*loc, key))
    elif origin in (list, tuple, set, frozenset) and isinstance(value, list | tuple):
        # a tuple of fixed length (a pair): each item its own type; a list, set or tuple[X, ...]: the one
        each = args if origin is tuple and Ellipsis not in args else args[:1] * len(value)
        for index, (wanted, item) in enumerate(zip(each, value, strict=False)):
            unwritten_number(wanted, item, (*loc, index))


def _number_problem(whole: bool, value: Any) -> PydanticCustomError | None:
    """pydantic's parsing error for a number setting's ``value`` that is a boolean or text not written as an
    option takes a number; None for any other."""
    kind = "int_parsing" if whole else "float_parsing"
    # YAML's yes/on/true: pydantic took it as 1, where a GPUWARDEN_ variable's 'true' is refused
    if isinstance(value, bool):
        return PydanticCustomError(
            kind, "a boolean, not a number: {text}", {"text": str(value).lower(), "boolean": True}
        )
    if isinstance(value, str) and not (WHOLE_NUMBER if whole else NUMBER).fullmatch(value):
        return PydanticCustomError(kind, "not written as a number option takes one: {text}", {"text": value})
    return None


def _refusing(problem_of: Callable[[str], str | None]) -> Callable[[SecretStr | None], SecretStr | None]:
    """A validator that refuses a secret for which ``problem_of`` names a problem."""

    def usable(value: SecretStr | None) -> SecretStr | None:
        problem = None if value is None else problem_of(value.get_secret_value())
        if problem is not None:
            raise ValueError(problem)
        return value

    return usable


Secret = Annotated[SecretStr | None, AfterValidator(_refusing(secret_problem))]
"""An optional secret setting: absent, or a value that can work (see ``secret_problem``)."""


Token = Annotated[SecretStr | None, AfterValidator(_refusing(token_problem))]
"""An optional bearer token setting: absent, or one a request can carry (see ``token_problem``)."""


def _http_url(shown: Callable[[str], str]) -> Callable[[str], str]:
    """The check of an http(s) URL the HTTP clients behind a setting can send to (``url_problem``, the check
    the CLI's ``--url`` gets too); its refusal quotes the URL as ``shown`` shows it, as ``config show`` does:
    the URL may come from a variable because it holds a credential."""

    def usable(value: str) -> str:
        problem = url_problem(value)
        if problem is not None:
            quoted = shown(value)
            problem = quoting_only(problem, value, quoted)
            raise ValueError(
                f"{quoted!r} is not an http(s) URL requests can go to ({problem});"
                " write it as http://HOST:PORT/PATH or https://HOST/PATH"
            )
        return value

    return usable


def _no_nul(value: str) -> str:
    """A path (or URL) without a NUL character: no file can have one, and ``os`` raised ValueError."""
    if "\0" in value:
        raise ValueError(f"{value!r} holds a NUL character, which no path can; remove it")
    return value


_API_PATH = re.compile(r"/api/v[0-9]+(?:/|$)")


def _base_url(appended: str) -> Callable[[str], str]:
    """The check of a base URL its client appends ``appended`` to (``/api/v1/query_range``): one that holds
    an API path already (``http://prom:9090/api/v1/query``, Prometheus' ``alerting`` config's
    ``http://serve:8080/api/v2/alerts``) sends every request to ``.../api/v1/query/api/v1/query_range``,
    answered 404 at each tick or post, which no check said before (a path prefix, a proxy's, is kept)."""

    def base(value: str) -> str:
        parts = urlsplit(value)
        found = _API_PATH.search(parts.path)
        if found is not None:
            base = parts._replace(path=parts.path[: found.start()], query="", fragment="").geturl()
            raise ValueError(
                f"{hidden_password(value)!r} holds an API path ({parts.path[found.start() :]}): every request"
                f" appends its own ({appended}), so each would be answered 404; write the base URL:"
                f" {hidden_password(base)}"
            )
        return value

    return base


# Shown (``config show``, the Alertmanager configuration's comment) with a password in it hidden, as serve's
# own errors write a store URL: ``http://prom:***@host/``.
_SHOWN_WITHOUT_PASSWORD = PlainSerializer(hidden_password, when_used="json")
HttpUrl = Annotated[str, AfterValidator(_http_url(hidden_password)), _SHOWN_WITHOUT_PASSWORD]
PrometheusUrl = Annotated[HttpUrl, AfterValidator(_base_url("/api/v1/query_range or /api/v1/query"))]
"""The base URL of a Prometheus-compatible HTTP API (a path prefix allowed, not ``/api/v1``)."""
ServeUrl = Annotated[HttpUrl, AfterValidator(_base_url("/api/v2/alerts"))]
"""The base URL of ``gpuwarden serve`` (not its ``/api/v2/alerts``)."""
CredentialUrl = Annotated[
    str, AfterValidator(_http_url(shown_url)), PlainSerializer(shown_url, when_used="json")
]
"""An http(s) URL whose path or query may be the credential (a webhook's): shown by its scheme and host."""
ShownUrl = Annotated[str, _SHOWN_WITHOUT_PASSWORD]
"""A URL its own validator checks (a Pushgateway's), shown with its password and tokens hidden."""
StoreUrl = Annotated[str, AfterValidator(_no_nul), _SHOWN_WITHOUT_PASSWORD]
"""A SQLite path or SQLAlchemy URL; ``config show`` prints it with its password hidden."""
LocalPath = Annotated[str, AfterValidator(_no_nul)]
"""A file or directory path of this machine."""


# ASCII digits only: \d would take "٢x٨" (Arabic-Indic digits), which int() then reads.
_SPEC_RE = re.compile(r"0*([0-9]+)[xX]0*([0-9]+)", re.ASCII)


def parse_simulate_spec(spec: str) -> tuple[int, int]:
    """Parse ``NODESxGPUS`` (e.g. ``2x8``) into ``(nodes, gpus_per_node)``."""
    match = _SPEC_RE.fullmatch(spec or "")
    if match is None:
        # Blanks are refused as every number of the command line refuses them (``--port ' 5'``).
        bare = "".join((spec or "").split())
        fix = f": no blanks; write {bare}" if bare != spec and _SPEC_RE.fullmatch(bare) else ""
        raise InputError(f"expected NODESxGPUS such as 2x8, got {spec!r}{fix}", field="simulate")
    nodes, gpus = match.groups()
    return _spec_count(nodes, MAX_SIM_NODES, "nodes", spec), _spec_count(
        gpus, MAX_GPUS_PER_NODE, "GPUs per node", spec
    )


def _spec_count(digits: str, most: int, what: str, spec: str) -> int:
    """One count of a ``NODESxGPUS`` spec, 1 to ``most``; ``InputError`` naming ``what`` otherwise."""
    count = int(digits) if len(digits) <= 9 else None  # int() raises past 4,300 digits
    if count is None or not 1 <= count <= most:
        got = count if count is not None else f"a number of {len(digits)} digits"
        shown = repr(spec) if len(spec) <= 40 else repr(spec[:37]) + "..."
        raise InputError(f"{what} must be 1..{most}, got {got} in {shown}", field="simulate")
    return count


def _simulate_spec(spec: str | None) -> str | None:
    """None, or a spec ``parse_simulate_spec`` takes (a validator)."""
    if spec is not None:
        try:
            parse_simulate_spec(spec)
        except InputError as exc:
            raise ValueError(exc.message) from exc
    return spec


SimulateSpec = Annotated[str | None, AfterValidator(_simulate_spec)]
"""``exporter.simulate``: real NVML (None) or a simulated fleet of ``NODESxGPUS``."""


def sim_fleet_nodes(nodes: int) -> None:
    """The ``sim`` section's fleet (``SimConfig.nodes``) is at most ``MAX_SIM_NODES`` nodes (raises
    ``ValueError``)."""
    if nodes > MAX_SIM_NODES:
        raise ValueError(
            f"clusters x racks_per_cluster x nodes_per_rack is {nodes:,} nodes; a simulated fleet has at most"
            f" {MAX_SIM_NODES}"
        )


def repeated_entries(field: str, values: Sequence[str], why: str) -> list[ConfigError]:
    """A problem per entry of the list setting ``field`` (``anomaly.detectors``) that an earlier one already
    is, at the entry's own line, saying ``why`` a list names each once."""
    first: dict[str, int] = {}
    problems = []
    for k, value in enumerate(values):
        if value in first:
            problems.append(
                ConfigError(f"{value!r} is also {field}[{first[value]}]; {why}", field=f"{field}[{k}]")
            )
        else:
            first[value] = k
    return problems
