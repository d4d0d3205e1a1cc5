"""``gpuwarden config show``: the effective configuration, with secrets, passwords and headers from variables
masked, unset references marked, problems named, and the anomaly settings in their old order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpuwarden.cli import app
from tests.gpuwarden.cli.built_runner import BuiltCliRunner

runner = BuiltCliRunner()


@pytest.mark.parametrize(
    ("text", "url", "section", "field", "shown"),
    [
        (
            "api:\n  db: {env: URL}\n",
            "postgresql+psycopg://gw:S3cretPass@db.example:5432/gw",
            "api",
            "db",
            "postgresql+psycopg://gw:***@db.example:5432/gw",
        ),
        (
            "anomaly:\n  prometheus_url: {env: URL}\n",
            "http://reader:S3cretPass@prom.example:9090",
            "anomaly",
            "prometheus_url",
            "http://reader:***@prom.example:9090",
        ),
        (  # a token in the query was shown whole, a password only was hidden
            "tracing:\n  otlp_endpoint: {env: URL}\n",
            "http://otel:4318/v1/traces?token=S3cretPass&tenant=gpu",
            "tracing",
            "otlp_endpoint",
            "http://otel:4318/v1/traces?token=***&tenant=gpu",
        ),
        (
            "slack:\n  base_url: {env: URL}\n",
            "http://slack-proxy:8000/api/?api_key=S3cretPass",
            "slack",
            "base_url",
            "http://slack-proxy:8000/api/?api_key=***",
        ),
        (
            "slack:\n  runbook_base_url: {env: URL}\n",
            "https://git.example/raw/runbooks?private_token=S3cretPass",
            "slack",
            "runbook_base_url",
            "https://git.example/raw/runbooks?private_token=***",
        ),
        (  # a plain text setting, shown whole with its password
            "tracing:\n  pushgateway_url: {env: URL}\n",
            "http://pusher:S3cretPass@pushgateway:9091",
            "tracing",
            "pushgateway_url",
            "http://pusher:***@pushgateway:9091",
        ),
    ],
    ids=[
        "store-url",
        "prometheus-url",
        "otlp-token",
        "slack-api-key",
        "runbook-token",
        "pushgateway-password",
    ],
)
def test_config_show_hides_a_urls_password_as_serves_errors_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, url: str, section: str, field: str, shown: str
) -> None:
    """It said "secrets masked" and printed the PostgreSQL password of ``api.db: {env: DB_URL}`` in clear."""
    monkeypatch.setenv("URL", url)
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[section][field] == shown
    assert "S3cretPass" not in result.output


def test_config_show_keeps_a_sqlite_path_as_written(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("api:\n  db: /var/lib/gpuwarden/incidents.db\n")
    result = runner.invoke(app, ["config", "show", str(path)])
    assert json.loads(result.output)["api"]["db"] == "/var/lib/gpuwarden/incidents.db"


UNSET_SECRETS = """\
api:
  db: {env: CLI_TEST_DB_URL}
  token: {env: CLI_TEST_API_TOKEN}
slack:
  bot_token: {env: CLI_TEST_SLACK_TOKEN}
  channel: "#gpu"
anomaly:
  prometheus_url: {env: CLI_TEST_PROM_URL}
webhooks:
  - name: oncall
    url: {env: CLI_TEST_HOOK_URL}
"""


def test_config_show_marks_each_unset_secret_and_validate_still_requires_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It refused the whole file ("CLI_TEST_API_TOKEN ... is not set") though it shows no secret: a person
    checking a file on a laptop had to export every token first."""
    monkeypatch.setenv("CLI_TEST_SLACK_TOKEN", "xoxb-S3cret")
    path = tmp_path / "gw.yaml"
    path.write_text(UNSET_SECRETS)
    shown = runner.invoke(app, ["config", "show", str(path)])
    assert shown.exit_code == 0, shown.output
    cfg = json.loads(shown.stdout)
    assert cfg["api"]["token"] == "<unset: set CLI_TEST_API_TOKEN>"
    assert cfg["api"]["db"] == "<unset: set CLI_TEST_DB_URL>"  # a store URL, which no URL placeholder passes
    assert cfg["anomaly"]["prometheus_url"] == "<unset: set CLI_TEST_PROM_URL>"
    assert cfg["webhooks"][0]["url"] == "<unset: set CLI_TEST_HOOK_URL>"
    assert cfg["slack"]["bot_token"] == "**********" and "S3cret" not in shown.output  # a set one: masked
    assert "unset.invalid" not in shown.output
    assert "CLI_TEST_API_TOKEN" in shown.stderr
    validated = runner.invoke(app, ["config", "validate", str(path)])
    assert validated.exit_code == 1 and "not set" in validated.stderr


UNSET_IN_LISTS = """\
anomaly:
  presence_queries: ['up{job="a"}', {env: CLI_TEST_QUERY}]
alerting:
  inhibit_rules:
    - source_matchers: [{env: CLI_TEST_MATCHER}]
      target_matchers: ['severity="info"']
webhooks:
  - name: oncall
    url: http://hooks.example
    headers: {X.Team: {env: CLI_TEST_TEAM}}
"""


def test_config_show_marks_an_unset_reference_that_is_a_list_item_or_a_dotted_key(tmp_path: Path) -> None:
    """A reference that sat directly in a list (or under a header name with a dot) was shown as the
    placeholder it was loaded with, ``http://unset.invalid``, as if that were its value."""
    path = tmp_path / "gw.yaml"
    path.write_text(UNSET_IN_LISTS)
    shown = runner.invoke(app, ["config", "show", str(path)])
    assert shown.exit_code == 0, shown.output
    cfg = json.loads(shown.stdout)
    assert cfg["anomaly"]["presence_queries"] == ['up{job="a"}', "<unset: set CLI_TEST_QUERY>"]
    assert cfg["alerting"]["inhibit_rules"][0]["source_matchers"] == ["<unset: set CLI_TEST_MATCHER>"]
    assert cfg["webhooks"][0]["headers"] == {"X.Team": "<unset: set CLI_TEST_TEAM>"}
    assert "unset.invalid" not in shown.output
    assert "CLI_TEST_QUERY" in shown.stderr and "CLI_TEST_TEAM" in shown.stderr


def test_config_show_still_refuses_a_file_with_a_real_problem(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("api:\n  token: {env: CLI_TEST_API_TOKEN}\n  port: x\n")
    result = runner.invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 1 and "api.port" in result.stderr and result.stdout == ""


def test_config_show_names_every_problem_of_the_file_not_only_the_first(tmp_path: Path) -> None:
    # It printed the first and "(and 1 more problem)" without saying which, as validate once did.
    path = tmp_path / "gw.yaml"
    path.write_text("api:\n  prot: 1\nalerting:\n  quiet_period_seconds: 5 min\n")
    result = runner.invoke(app, ["config", "show", str(path)])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1 and result.stdout == "", result.output
    assert f"error: {path}:2: api.prot: unknown field" in said
    assert f"error: {path}:4: alerting.quiet_period_seconds:" in said and "more problem" not in said


SET_IN_HEADERS = """\
webhooks:
  - name: oncall
    url: https://hooks.example/in
    headers: {X-Api-Key: {env: CLI_TEST_HOOK_KEY}, X-Team: gpu-infra}
"""


def test_config_show_masks_a_header_read_from_a_variable_as_it_masks_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver's key sent as a header (``X-Api-Key``, which ``bearer_token`` cannot carry) written as the
    ``{env: ...}`` reference secrets are written as: ``config show`` printed the variable's value whole."""
    monkeypatch.setenv("CLI_TEST_HOOK_KEY", "k3y-S3cret")
    path = tmp_path / "gw.yaml"
    path.write_text(SET_IN_HEADERS)
    shown = runner.invoke(app, ["config", "show", str(path)])
    assert shown.exit_code == 0, shown.output
    headers = json.loads(shown.stdout)["webhooks"][0]["headers"]
    assert headers == {"X-Api-Key": "**********", "X-Team": "gpu-infra"}  # the literal one as written
    assert "S3cret" not in shown.output


def test_config_show_masks_a_credential_header_written_into_the_file(tmp_path: Path) -> None:
    """``Proxy-Authorization``, ``Cookie`` and ``X-Api-Key`` written as text (``Authorization`` alone is
    refused, for ``bearer_token``): ``config show`` printed each credential whole."""
    path = tmp_path / "gw.yaml"
    path.write_text(
        "webhooks:\n  - name: oncall\n    url: https://hooks.example/in\n    headers:\n"
        "      {Proxy-Authorization: Basic cHJveHk6UzNjcmV0, Cookie: session=S3cret1, X-Api-Key: S3cret2,"
        " X-Auth-Token: S3cret3, X-Team: gpu-infra}\n"
    )
    shown = runner.invoke(app, ["config", "show", str(path)])
    assert shown.exit_code == 0, shown.output
    headers = json.loads(shown.stdout)["webhooks"][0]["headers"]
    assert headers == {
        **dict.fromkeys(("Proxy-Authorization", "Cookie", "X-Api-Key", "X-Auth-Token"), "**********"),
        "X-Team": "gpu-infra",
    }
    assert "S3cret" not in shown.output and "cHJveHk6UzNjcmV0" not in shown.output


ANOMALY_SHOWN_ORDER = [
    *("source", "prometheus_url", "query_timeout_seconds", "queries", "detectors", "adaptive_metrics"),
    *("adaptive_seasonality", "min_deviation_by_metric", "reescalate_alerts", "pending_ticks"),
    *("score_outside_data_range", "immediate_resolve_after", "infer_every_seconds", "fit_every_seconds"),
    *("alert_url", "listen_address", "port", "max_lookback_seconds", "latency_offset_seconds"),
    *("forget_after_seconds", "stale_after_seconds", "thresholds", "level_shift_queries", "fleet_queries"),
    *("multivariate_queries", "fleet_peer_labels", "fleet_k", "fleet_k_exit", "fleet_hold_ticks"),
    *("fleet_load_query", "fleet_load_adjusted", "fleet_min_deviation_by_metric", "thermal_lag_seconds"),
    *("thermal_alpha", "thermal_k", "thermal_min_deviation", "thermal_ridge_watts", "thermal_warmup"),
    *("thermal_hold_seconds", "thermal_settle_seconds", "thermal_peer_labels", "thermal_min_peers"),
    *("thermal_peer_tolerance", "presence_queries", "absent_after_seconds", "absent_forget_seconds"),
    *("multivariate_trees", "multivariate_history"),
    *("state_file", "state_save_seconds"),  # new settings come after the previous release's
    *("fleet_rearm_ticks", "band_restore_ticks"),
]
THRESHOLDS_SHOWN_ORDER = [
    *("alpha", "scale_alpha", "seasonal_alpha", "k", "warmup", "direction", "min_deviation"),
    *("min_relative_deviation", "seasonality", "seasonal_gain", "clip", "fast_alpha", "volatility_k"),
    *("tail_quantile", "tail_k", "tail_rate", "error_clip", "seasonal_freeze", "resolve_after"),
]


def test_config_show_lists_the_anomaly_settings_in_the_order_of_the_previous_release(tmp_path: Path) -> None:
    # An operator diffs one release's `config show` against the next: a setting that moved (a section split
    # into modules, fields regrouped) reads as removed and added again.
    path = tmp_path / "gw.yaml"
    path.write_text("api:\n  db: /var/lib/gpuwarden/incidents.db\n")
    shown = json.loads(runner.invoke(app, ["config", "show", str(path)]).output)["anomaly"]
    assert list(shown) == ANOMALY_SHOWN_ORDER
    assert list(shown["thresholds"]) == THRESHOLDS_SHOWN_ORDER


@pytest.mark.parametrize("text", [None, "api:\n  db: /var/lib/gpuwarden/incidents.db\n"])
def test_config_show_says_anomaly_run_reads_prometheus_when_source_is_left_unset(
    tmp_path: Path, text: str | None
) -> None:
    # `anomaly run` reads Prometheus with `anomaly.source` unset; config show said "in-process", the demo's.
    args = ["config", "show"]
    if text is not None:
        path = tmp_path / "gw.yaml"
        path.write_text(text)
        args.append(str(path))
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["anomaly"]["source"] == "prometheus"
