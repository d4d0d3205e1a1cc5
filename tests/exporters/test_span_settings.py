"""Tracing settings: the OTEL_* variables, the configuration and the command line, and what the start-up
line says about where spans go."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporters.span_settings import (
    SpanSettings,
    TracingOptions,
    resolve_tracing,
    traces_url,
    tracing_from_environment,
)
from gpuwarden.config import TracingConfig, load_config
from gpuwarden.errors import InputError

BASE = "http://collector:4318"


@pytest.mark.parametrize(
    ("environ", "service", "endpoint"),
    [
        ({}, "gpuwarden-inference", None),
        ({"OTEL_SERVICE_NAME": "llama-serve"}, "llama-serve", None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": BASE}, "gpuwarden-inference", f"{BASE}/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": f"{BASE}/"}, "gpuwarden-inference", f"{BASE}/v1/traces"),
        # The path is appended to the base URL's path, not to its query (which posted every batch to `/`).
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": f"{BASE}?tenant=gpu"},
            "gpuwarden-inference",
            f"{BASE}/v1/traces?tenant=gpu",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": f"{BASE}/otlp/?tenant=gpu"},
            "gpuwarden-inference",
            f"{BASE}/otlp/v1/traces?tenant=gpu",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": BASE, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{BASE}/t"},
            "gpuwarden-inference",
            f"{BASE}/t",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": BASE, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            "gpuwarden-inference",
            f"{BASE}/v1/traces",
        ),
    ],
    ids=[
        "none",
        "service-name",
        "base-endpoint",
        "base-endpoint-slash",
        "base-endpoint-query",
        "base-endpoint-path-query",
        "traces-endpoint-wins",
        "protocol",
    ],
)
def test_standard_variables_apply_when_the_configuration_is_silent(
    environ: dict[str, str], service: str, endpoint: str | None
) -> None:
    cfg = tracing_from_environment(TracingConfig(), environ)
    assert cfg.service_name == service
    assert (str(cfg.otlp_endpoint) if cfg.otlp_endpoint else None) == endpoint


def test_gpuwarden_configuration_wins_over_the_standard_variables(tmp_path: Path) -> None:
    path = tmp_path / "gpuwarden.yaml"
    path.write_text("tracing:\n  service_name: from-yaml\n  otlp_endpoint: http://yaml:4318/v1/traces\n")
    environ = {"OTEL_SERVICE_NAME": "from-env", "OTEL_EXPORTER_OTLP_ENDPOINT": BASE}
    cfg = tracing_from_environment(load_config(path).tracing, environ)
    assert cfg.service_name == "from-yaml"
    assert str(cfg.otlp_endpoint) == "http://yaml:4318/v1/traces"


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": BASE, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": BASE, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "not a url"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    ],
    ids=["grpc", "grpc-traces", "bad-url"],
)
def test_a_variable_that_cannot_be_honoured_is_refused_naming_it(
    environ: dict[str, str], variable: str
) -> None:
    with pytest.raises(ValueError, match=variable):
        resolve_tracing(TracingConfig(), environ)


OTLP = "http://127.0.0.1:4318/v1/traces"


@pytest.mark.parametrize(
    ("config", "environ", "options", "exporter", "destination"),
    [
        (TracingConfig(), {}, TracingOptions(), "none", "none (no OTLP endpoint set)"),
        (TracingConfig(), {}, TracingOptions(trace_console=True), "console", "console (--trace-console)"),
        (
            TracingConfig(),
            {},
            TracingOptions(otlp_endpoint=OTLP),
            "otlp",
            f"otlp to {OTLP} (from --otlp-endpoint)",
        ),
        (
            TracingConfig(otlp_endpoint=OTLP),
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://env:4318/v1/traces"},
            TracingOptions(),
            "otlp",
            f"otlp to {OTLP} (from tracing.otlp_endpoint)",
        ),
        (
            TracingConfig(),
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318"},
            TracingOptions(),
            "otlp",
            "otlp to http://env:4318/v1/traces (from OTEL_EXPORTER_OTLP_ENDPOINT)",
        ),
        (
            TracingConfig(otlp_endpoint=OTLP),
            {},
            TracingOptions(otlp_endpoint="http://opt:4318/v1/traces"),
            "otlp",
            "otlp to http://opt:4318/v1/traces (from --otlp-endpoint)",
        ),
        (
            TracingConfig(span_exporter="console"),
            {},
            TracingOptions(otlp_endpoint=OTLP),
            "otlp",
            f"otlp to {OTLP} (from --otlp-endpoint)",
        ),
        (
            TracingConfig(span_exporter="console"),
            {},
            TracingOptions(),
            "console",
            "console (tracing.span_exporter)",
        ),
        (
            TracingConfig(span_exporter="console"),
            {},
            TracingOptions(quiet_spans=True),
            "none",
            "none (--quiet-spans)",
        ),
        (
            TracingConfig(otlp_endpoint="http://u:secret@c:4318/v1/traces"),
            {},
            TracingOptions(),
            "otlp",
            "otlp to http://u:***@c:4318/v1/traces (from tracing.otlp_endpoint)",
        ),
        (  # a collector that takes its token in the query: it was said whole
            TracingConfig(),
            {},
            TracingOptions(otlp_endpoint="http://c:4318/v1/traces?token=secret&tenant=gpu"),
            "otlp",
            "otlp to http://c:4318/v1/traces?token=***&tenant=gpu (from --otlp-endpoint)",
        ),
    ],
    ids=[
        "default",
        "trace-console",
        "otlp-option",
        "config-beats-variable",
        "base-variable",
        "option-beats-config",
        "option-beats-config-console",
        "console-config",
        "quiet-option-wins",
        "password-hidden",
        "query-token-hidden",
    ],
)
def test_the_start_up_line_says_where_spans_go_and_which_setting_chose_it(
    config: TracingConfig, environ: dict[str, str], options: TracingOptions, exporter: str, destination: str
) -> None:
    settings = resolve_tracing(config, environ, options)
    assert settings.config.span_exporter == exporter
    assert settings.destination == destination


@pytest.mark.parametrize(
    ("config", "options"),
    [
        (TracingConfig(), TracingOptions()),
        (TracingConfig(otlp_endpoint=OTLP), TracingOptions()),
        (TracingConfig(), TracingOptions(otlp_endpoint=OTLP)),
        (TracingConfig(), TracingOptions(trace_console=True)),
    ],
    ids=["default", "config-endpoint", "option-endpoint", "console-option"],
)
def test_otel_sdk_disabled_turns_span_export_off_and_says_so(
    config: TracingConfig, options: TracingOptions
) -> None:
    environ = {"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318"}
    settings = resolve_tracing(config, environ, options)
    assert settings == SpanSettings(settings.config, "none (OTEL_SDK_DISABLED=true)")
    assert settings.config.span_exporter == "none"
    assert settings.config.enabled  # the span metrics still count every request


@pytest.mark.parametrize("endpoint", ["ftp://x", "127.0.0.1:4318", ""], ids=["ftp", "no-scheme", "empty"])
def test_a_bad_otlp_endpoint_option_is_refused_naming_the_option_like_the_setting(endpoint: str) -> None:
    with pytest.raises(InputError, match=r"^--otlp-endpoint: .* is not an http\(s\) URL") as option:
        resolve_tracing(TracingConfig(), {}, TracingOptions(otlp_endpoint=endpoint))
    with pytest.raises(ValueError, match=r"^OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: .* is not an http\(s\) URL"):
        resolve_tracing(TracingConfig(), {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint or "x"})
    assert option.value.field == "--otlp-endpoint"


@pytest.mark.parametrize("other", ["trace_console", "quiet_spans"])
def test_an_otlp_endpoint_option_with_another_span_destination_is_refused(other: str) -> None:
    flag = "--" + other.replace("_", "-")
    options = TracingOptions(otlp_endpoint=OTLP, **{other: True})  # type: ignore[arg-type]
    with pytest.raises(InputError, match=f"--otlp-endpoint: .*{flag}"):
        resolve_tracing(TracingConfig(), {}, options)


def test_grpc_protocol_is_refused_for_an_endpoint_from_the_configuration_too() -> None:
    environ = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    with pytest.raises(ValueError, match=r"OTEL_EXPORTER_OTLP_PROTOCOL=grpc: .*from tracing.otlp_endpoint"):
        resolve_tracing(TracingConfig(otlp_endpoint=OTLP), environ)
    assert resolve_tracing(TracingConfig(), environ).destination == "none (no OTLP endpoint set)"


def test_a_grpc_protocol_refusal_says_what_to_set_instead() -> None:
    """It said only that http/protobuf is exported: the operator had to guess whether to change the
    variable, the endpoint's port or the collector."""
    environ = {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}
    with pytest.raises(ValueError) as refused:
        resolve_tracing(TracingConfig(otlp_endpoint=OTLP), environ)
    assert str(refused.value).endswith(
        "; set OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf (or unset it) and point the endpoint at the"
        " collector's OTLP/HTTP port (4318 by default, not gRPC's 4317)"
    ), str(refused.value)


def test_an_http_json_protocol_refusal_does_not_send_the_operator_to_another_port() -> None:
    """It said "4318 by default, not gRPC's 4317" for http/json too, which already uses OTLP/HTTP's port."""
    environ = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
    with pytest.raises(ValueError) as refused:
        resolve_tracing(TracingConfig(otlp_endpoint=OTLP), environ)
    assert str(refused.value).endswith(
        "; set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf (or unset it) and point the endpoint at the"
        " collector's OTLP/HTTP port"
    ), str(refused.value)


@pytest.mark.parametrize(
    ("options", "enabled"),
    [
        (TracingOptions(), False),
        (TracingOptions(enabled=True), True),
        (TracingOptions(trace_console=True), True),
        (TracingOptions(otlp_endpoint=OTLP), True),
        (TracingOptions(enabled=False, trace_console=True), False),
    ],
    ids=["no-option", "tracing-option", "console-option", "endpoint-option", "no-tracing-option"],
)
def test_tracing_enabled_false_holds_unless_an_option_asks_for_tracing(
    options: TracingOptions, enabled: bool
) -> None:
    """``--tracing`` defaulted to on, and turned a file's ``tracing.enabled: false`` on whatever it said."""
    settings = resolve_tracing(TracingConfig(enabled=False), {}, options)
    assert settings.config.enabled is enabled
    assert (settings.destination == "none") is not enabled


@pytest.mark.parametrize(
    ("environ", "warned"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": f"{BASE}/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": f"{BASE}/v1/traces/"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": f"{BASE}/otlp/v1/traces?tenant=gpu"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": BASE}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": f"{BASE}/v1/traces-proxy"}, False),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{BASE}/v1/traces"}, False),
        (  # the traces variable wins: the base is not used
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"{BASE}/v1/traces",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{BASE}/v1/traces",
            },
            False,
        ),
    ],
    ids=[
        "base-ends-v1-traces",
        "trailing-slash",
        "with-prefix-and-query",
        "plain-base",
        "other-path",
        "traces-variable",
        "traces-variable-wins",
    ],
)
def test_a_base_endpoint_already_ending_in_v1_traces_is_appended_to_all_the_same_and_warned_of(
    environ: dict[str, str], warned: bool
) -> None:
    # OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318/v1/traces, a common mistake: spans went to
    # .../v1/traces/v1/traces (the specification's rule, every official SDK's), a 404, and nothing said why.
    settings = resolve_tracing(TracingConfig(), environ)
    assert settings.config.span_exporter == "otlp"
    if not warned:
        assert settings.warning is None
        return
    base = environ["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert str(settings.config.otlp_endpoint) == traces_url(base)  # kept, as the specification says
    assert settings.warning == (
        f"OTEL_EXPORTER_OTLP_ENDPOINT={base} already ends in /v1/traces: it is a base URL, to which"
        f" /v1/traces is appended, so spans go to {traces_url(base)}; set OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        " to give the traces URL as is, or drop /v1/traces from OTEL_EXPORTER_OTLP_ENDPOINT"
    )


def test_the_doubled_traces_path_warning_hides_the_endpoints_password() -> None:
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://u:pw-secret@c:4318/v1/traces"}
    warning = resolve_tracing(TracingConfig(), environ).warning
    assert warning is not None and "pw-secret" not in warning and "u:***@c:4318" in warning


TRACES_URL = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{BASE}/v1/traces"}


@pytest.mark.parametrize(
    ("config", "environ", "seconds"),
    [
        (TracingConfig(), {}, 10.0),
        (TracingConfig(), {"OTEL_EXPORTER_OTLP_TIMEOUT": "2500"}, 2.5),
        (
            TracingConfig(),
            {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "1000", "OTEL_EXPORTER_OTLP_TIMEOUT": "30000"},
            1.0,
        ),
        (
            TracingConfig(),
            {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": " ", "OTEL_EXPORTER_OTLP_TIMEOUT": "30000"},
            30.0,
        ),
        (TracingConfig(otlp_timeout_seconds=4), {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "1000"}, 4.0),
        (TracingConfig(otlp_timeout_seconds=4), {"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"}, 4.0),
    ],
    ids=[
        "default",
        "otlp-variable",
        "traces-variable-wins",
        "blank-traces-variable",
        "configuration-wins",
        "configuration-wins-over-a-bad-variable",
    ],
)
def test_the_otlp_timeout_variables_set_the_export_timeout_in_milliseconds(
    config: TracingConfig, environ: dict[str, str], seconds: float
) -> None:
    """They were not read at all: gpuwarden passes its own timeout (10 s), which the SDK's variables do not
    override, so a collector that held each export 9 s was waited for whatever they said."""
    settings = resolve_tracing(config, {**TRACES_URL, **environ})
    assert settings.config.otlp_timeout_seconds == seconds
    assert settings.warning is None


@pytest.mark.parametrize("value", ["abc", "1.5", "-5", "1_000", "0", "604800001"])
def test_an_otlp_timeout_variable_that_is_no_whole_number_of_milliseconds_is_refused_naming_it(
    value: str,
) -> None:
    with pytest.raises(ValueError, match=r"^OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=") as refused:
        resolve_tracing(TracingConfig(), {**TRACES_URL, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": value})
    assert "give the OTLP export timeout in milliseconds, a whole number from 1 to 604800000" in str(
        refused.value
    )


def test_an_otlp_timeout_under_a_second_is_honoured_and_warned_of_as_maybe_meant_in_seconds() -> None:
    settings = resolve_tracing(TracingConfig(), {**TRACES_URL, "OTEL_EXPORTER_OTLP_TIMEOUT": "10"})
    assert settings.config.otlp_timeout_seconds == 0.01
    assert settings.warning == (
        "OTEL_EXPORTER_OTLP_TIMEOUT=10: each span export gives up after 10 ms (the variable is in"
        " milliseconds, as OpenTelemetry's specification says; the Python SDK reads seconds): for 10 s write"
        " 10000"
    )
