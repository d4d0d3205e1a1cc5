"""The tracing settings a service runs with, and where its spans go, said the way its start-up line says it.

Precedence, highest first: command-line options, gpuwarden's configuration (YAML or
``GPUWARDEN_TRACING__*`` variables: anything in ``config.model_fields_set``), the standard ``OTEL_*``
variables, built-in defaults. That is OpenTelemetry's own rule (environment variables are defaults that
explicit SDK configuration overrides), with gpuwarden's configuration as the explicit one. One exception:
``OTEL_SDK_DISABLED=true``, the specification's switch for the whole SDK, turns span export off whatever
asks for it. The span metrics on ``/metrics`` are gpuwarden's own request counters, not SDK output, and
keep counting.

No OpenTelemetry import here: ``config validate`` applies the same checks without loading the SDK.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError

from gpuwarden.config import TracingConfig
from gpuwarden.errors import ConfigError, InputError
from gpuwarden.limits import MAX_INTERVAL_SECONDS
from gpuwarden.numerals import WHOLE_NUMBER
from gpuwarden.redaction import hidden_password

# Standard variables (OpenTelemetry SDK environment specification and the OTLP exporter specification).
OTEL_SDK_DISABLED = "OTEL_SDK_DISABLED"
OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"
OTEL_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
OTEL_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
OTEL_TRACES_PROTOCOL = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
OTEL_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
OTEL_TRACES_TIMEOUT = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"
OTEL_TIMEOUT = "OTEL_EXPORTER_OTLP_TIMEOUT"
# The timeouts are whole milliseconds (the specification's Timeout type); the Python SDK (1.45 here) reads
# seconds, so a value under a second is more likely seconds than an export meant to give up that soon.
MOST_TIMEOUT_MS = int(MAX_INTERVAL_SECONDS * 1000)  # tracing.otlp_timeout_seconds' bound
SECONDS_LIKE_MS = 1000
CONFIG_ENDPOINT = "tracing.otlp_endpoint"
OPTION_ENDPOINT = "--otlp-endpoint"


@dataclass(frozen=True)
class TracingOptions:
    """What the command line asked of tracing; ``None`` or ``False`` where an option was not given."""

    enabled: bool | None = None  # --tracing / --no-tracing; None: tracing.enabled decides
    otlp_endpoint: str | None = None
    trace_console: bool = False
    quiet_spans: bool = False


@dataclass(frozen=True)
class SpanSettings:
    """The tracing section to run with (``span_exporter`` never ``auto``) and where its spans go, in words:
    ``otlp to URL (from --otlp-endpoint)``, ``none (OTEL_SDK_DISABLED=true)``...; ``warning``: what looks
    like a mistake in how the spans' destination was set, honoured all the same, or None."""

    config: TracingConfig
    destination: str
    warning: str | None = None


def sdk_disabled(environ: Mapping[str, str]) -> bool:
    """Whether ``OTEL_SDK_DISABLED`` is ``true`` (case-insensitive, as the specification reads it)."""
    return environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true"


def endpoint_problem(value: str) -> str | None:
    """Why ``value`` cannot be an OTLP/HTTP traces URL (the check ``tracing.otlp_endpoint`` gets), or None."""
    try:
        TracingConfig.model_validate({"otlp_endpoint": value})
    except ValidationError as exc:
        return str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
    return None


def resolve_tracing(
    config: TracingConfig, environ: Mapping[str, str], options: TracingOptions | None = None
) -> SpanSettings:
    """Merge the configuration, the ``OTEL_*`` variables and the command line into the settings to run with.

    Raises ``InputError`` naming the option for a bad or contradictory option (a person typed it: the
    command exits 2), ``ConfigError`` for a setting (its ``field``, to be located in the file), ``ValueError``
    naming the variable for anything else.
    """
    options = options or TracingOptions()
    timeout_warning = None if "otlp_timeout_seconds" in config.model_fields_set else _timeout_warning(environ)
    config, source = _from_environment(config, environ)
    config, source, why = _apply_options(config, options, source)
    if not config.enabled:
        return SpanSettings(config.model_copy(update={"span_exporter": "none"}), "none")
    if sdk_disabled(environ):
        return SpanSettings(
            config.model_copy(update={"span_exporter": "none"}), f"none ({OTEL_SDK_DISABLED}=true)"
        )
    kind = config.span_exporter
    if kind == "auto":  # console only when asked: not 40 lines of JSON per request by default
        kind, why = ("otlp", why) if config.otlp_endpoint else ("none", "no OTLP endpoint set")
    config = config.model_copy(update={"span_exporter": kind})
    if kind != "otlp":
        return SpanSettings(config, f"{kind} ({why})")
    if config.otlp_endpoint is None:  # a setting's problem: said at its line (it was said with none)
        raise ConfigError(
            f"otlp, but no OTLP endpoint is set: set {CONFIG_ENDPOINT}, {OPTION_ENDPOINT} or"
            f" {OTEL_TRACES_ENDPOINT}",
            field="tracing.span_exporter",
        )
    _check_protocol(environ, source)
    url = hidden_password(str(config.otlp_endpoint))
    doubled = _doubled_path_warning(environ, url) if source == OTEL_ENDPOINT else None
    warning = "; ".join(w for w in (doubled, timeout_warning) if w is not None) or None
    return SpanSettings(config, f"otlp to {url} (from {source})", warning)


def _doubled_path_warning(environ: Mapping[str, str], url: str) -> str | None:
    """The warning for an ``OTEL_EXPORTER_OTLP_ENDPOINT`` that already ends in ``/v1/traces``: a base URL, so
    the specification (and every official SDK) appends ``/v1/traces`` again, and ``url`` (where its spans
    go) ends in ``/v1/traces/v1/traces``, which a collector answers 404. Kept, as the specification says;
    said, with the variable that takes the traces URL as is."""
    base = environ.get(OTEL_ENDPOINT, "").strip()
    if not urlsplit(base).path.rstrip("/").endswith("/v1/traces"):
        return None
    return (
        f"{OTEL_ENDPOINT}={hidden_password(base)} already ends in /v1/traces: it is a base URL, to which"
        f" /v1/traces is appended, so spans go to {url}; set {OTEL_TRACES_ENDPOINT} to give the traces URL as"
        f" is, or drop /v1/traces from {OTEL_ENDPOINT}"
    )


def tracing_from_environment(config: TracingConfig, environ: Mapping[str, str]) -> TracingConfig:
    """``config`` with the standard OpenTelemetry variables applied where gpuwarden's settings are silent.

    - ``OTEL_SERVICE_NAME`` sets ``service_name``.
    - ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is the traces URL as is; otherwise
      ``OTEL_EXPORTER_OTLP_ENDPOINT`` is a base URL to which ``/v1/traces`` is appended, as the OTLP/HTTP
      exporter specification says.
    - ``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT``, else ``OTEL_EXPORTER_OTLP_TIMEOUT``, sets
      ``otlp_timeout_seconds``, from milliseconds (the specification's unit, not the Python SDK's seconds).

    A bad value is refused with a ``ValueError`` naming the variable.
    """
    return _from_environment(config, environ)[0]


def _from_environment(config: TracingConfig, environ: Mapping[str, str]) -> tuple[TracingConfig, str]:
    """``tracing_from_environment``, and where the OTLP endpoint came from ("" for nowhere)."""
    explicit = config.model_fields_set
    update: dict[str, object] = {}
    source = CONFIG_ENDPOINT if config.otlp_endpoint is not None else ""
    service = environ.get(OTEL_SERVICE_NAME, "").strip()
    if service and "service_name" not in explicit:
        update["service_name"] = service
    if "otlp_endpoint" not in explicit and config.otlp_endpoint is None:
        endpoint, variable = _environment_endpoint(environ)
        if endpoint:
            problem = endpoint_problem(endpoint)
            if problem is not None:
                raise ValueError(f"{variable}: {problem}")
            update["otlp_endpoint"], source = endpoint, variable
    timeout = None if "otlp_timeout_seconds" in explicit else _environment_timeout(environ)
    if timeout is not None:  # read only where it applies, as the endpoint variables are
        update["otlp_timeout_seconds"] = timeout[0] / 1000
    if not update:
        return config, source
    # exclude_unset: what was not set stays unset, so later steps still tell a user's value from a default
    return TracingConfig.model_validate({**config.model_dump(exclude_unset=True), **update}), source


def _apply_options(
    config: TracingConfig, options: TracingOptions, source: str
) -> tuple[TracingConfig, str, str]:
    """The command line's changes: the config, the endpoint's source, and what chose the exporter."""
    if options.otlp_endpoint is not None and (options.trace_console or options.quiet_spans):
        other = "--trace-console" if options.trace_console else "--quiet-spans"
        raise InputError(
            f"spans go to one place: give {OPTION_ENDPOINT} (OTLP) or {other}, not both",
            field=OPTION_ENDPOINT,
        )
    # Not given, --tracing leaves tracing.enabled as the file says (its default turned a file's false on),
    # but an option that says where spans go asks for them.
    enabled = options.enabled
    if enabled is None and (
        options.otlp_endpoint is not None or options.trace_console or options.quiet_spans
    ):
        enabled = True
    update: dict[str, object] = {} if enabled is None else {"enabled": enabled}
    why = "tracing.span_exporter"
    if options.otlp_endpoint is not None:
        problem = endpoint_problem(options.otlp_endpoint)
        if problem is not None:
            raise InputError(problem, field=OPTION_ENDPOINT)
        update.update(otlp_endpoint=options.otlp_endpoint, span_exporter="otlp")
        source = why = OPTION_ENDPOINT
    elif options.trace_console:
        update["span_exporter"], why = "console", "--trace-console"
    elif options.quiet_spans:
        update["span_exporter"], why = "none", "--quiet-spans"
    return config.model_copy(update=update), source, why


def _check_protocol(environ: Mapping[str, str], source: str) -> None:
    """Only OTLP over HTTP with protobuf is exported: a ``grpc`` or ``http/json`` protocol variable is
    refused rather than sending protobuf where JSON or gRPC is expected."""
    variable = OTEL_TRACES_PROTOCOL if environ.get(OTEL_TRACES_PROTOCOL, "").strip() else OTEL_PROTOCOL
    protocol = environ.get(variable, "").strip() or "http/protobuf"
    if protocol != "http/protobuf":
        # The port hint is for gRPC only: http/json goes to the same OTLP/HTTP port as protobuf.
        port = " (4318 by default, not gRPC's 4317)" if protocol.startswith("grpc") else ""
        raise ValueError(
            f"{variable}={protocol}: only http/protobuf is exported (endpoint from {source}); set"
            f" {variable}=http/protobuf (or unset it) and point the endpoint at the collector's OTLP/HTTP"
            f" port{port}"
        )


def _environment_endpoint(environ: Mapping[str, str]) -> tuple[str, str]:
    traces = environ.get(OTEL_TRACES_ENDPOINT, "").strip()
    if traces:
        return traces, OTEL_TRACES_ENDPOINT
    base = environ.get(OTEL_ENDPOINT, "").strip()
    if base:
        return traces_url(base), OTEL_ENDPOINT
    return "", ""


def _environment_timeout(environ: Mapping[str, str]) -> tuple[int, str, str] | None:
    """The OTLP export timeout the variables give, in milliseconds, with the variable and its text; None where
    neither is set. Refused naming the variable: anything but a whole number of milliseconds from 1 to
    ``MOST_TIMEOUT_MS`` (0, no limit in the specification, too: a stop waits one timeout for the last
    spans)."""
    for variable in (OTEL_TRACES_TIMEOUT, OTEL_TIMEOUT):
        text = environ.get(variable, "").strip()
        if not text:
            continue
        if WHOLE_NUMBER.fullmatch(text) and 0 < int(text) <= MOST_TIMEOUT_MS:
            return int(text), variable, text
        zero = (
            " (0, no limit, is not taken: a stop waits one timeout for the spans left)" if text == "0" else ""
        )
        raise ValueError(
            f"{variable}={text!r}{zero}: give the OTLP export timeout in milliseconds, a whole number from 1"
            f" to {MOST_TIMEOUT_MS} (10000: 10 s)"
        )
    return None


def _timeout_warning(environ: Mapping[str, str]) -> str | None:
    """The warning for a timeout variable under a second: milliseconds, as the specification says (and
    honoured so), where the Python SDK reads seconds, so ``10`` was likely meant as 10 s."""
    timeout = _environment_timeout(environ)
    if timeout is None or timeout[0] >= SECONDS_LIKE_MS:
        return None
    ms, variable, text = timeout
    return (
        f"{variable}={text}: each span export gives up after {ms} ms (the variable is in milliseconds, as"
        f" OpenTelemetry's specification says; the Python SDK reads seconds): for {ms} s write {ms * 1000}"
    )


def traces_url(base: str) -> str:
    """The traces URL of a base URL (``OTEL_EXPORTER_OTLP_ENDPOINT``): ``v1/traces`` appended to its path, as
    the OTLP exporter specification says; a query or fragment stays after it (appended to the whole string,
    ``http://collector:4318?tenant=gpu`` posted every batch to ``/``, which a collector answers 404)."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/v1/traces"))
