"""`gpuwarden config validate` and loading refusing what serve, the exporter or anomaly run could not run:
inventories, values no setting can use, mutes, and anomaly queries."""

from pathlib import Path

import pytest

from alerting.matchers import parse_matcher
from gpuwarden.cli import app
from gpuwarden.config import load_config
from gpuwarden.errors import ConfigError
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.gpuwarden.config_files import write
from tests.gpuwarden.startable import startable

runner = BuiltCliRunner()


def test_config_validate_command_reports_ok_and_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = startable(monkeypatch, "exporter:\n  port: 9401\n")
    good = runner.invoke(app, ["config", "validate", str(write(tmp_path, text))])
    assert good.exit_code == 0
    assert "ok" in good.output
    bad_path = tmp_path / "bad.yaml"
    bad_path.write_text("exporter:\n  port: -1\n")
    bad = runner.invoke(app, ["config", "validate", str(bad_path)])
    assert bad.exit_code == 1
    assert "exporter.port" in bad.output


def test_the_example_in_deploy_loads_and_its_matchers_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GPUWARDEN_API_TOKEN", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.setenv(name, f"secret-{name}")
    example = Path(__file__).resolve().parents[2] / "deploy" / "gpuwarden.example.yaml"
    cfg = load_config(example)
    assert cfg.api.token is not None and cfg.api.token.get_secret_value() == "secret-GPUWARDEN_API_TOKEN"
    # The GPU queries; the inference requests' are PromQL named for their alerts (test_inference_queries...).
    gpu = [q for q in cfg.anomaly.queries if "gpuwarden_inference_" not in q.expr]
    names = [q.name for q in gpu]
    assert names == [q.expr for q in gpu]  # detectors find queries by metric name
    assert cfg.anomaly.fleet_load_query in names
    assert {"DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SM_CLOCK"} <= set(names) & set(cfg.anomaly.fleet_queries)
    ranges = {q.name: q.data_range for q in gpu}  # bands of non-negative metrics stay >= 0
    assert ranges["DCGM_FI_DEV_GPU_UTIL"] == (0.0, 100.0)
    # ... and a garbage reading (dcgm-exporter has served 808334905) is out of every gauge's range.
    assert all(r is not None and r[0] == 0.0 and 100.0 <= r[1] < 808334905.0 for r in ranges.values() if r)
    assert {"DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_FB_USED"} <= {
        name for name, r in ranges.items() if r is not None
    }
    rule = cfg.alerting.inhibit_rules[0]
    for matchers in (rule.source_matchers, rule.target_matchers):
        assert [parse_matcher(m) for m in matchers]
    assert cfg.alerting.maintenance_windows == []  # a dated window would mute r07 for whoever deploys it then


def test_the_examples_inference_queries_are_scored_on_the_side_that_is_a_fault(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The example read only GPUs: an operator copying it watched no request latency, error or throughput.
    # Real Prometheus answers them in tests/integration/test_inference_example_queries.py.
    for name in ("GPUWARDEN_API_TOKEN", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.setenv(name, f"secret-{name}")
    anomaly = load_config(Path(__file__).resolve().parents[2] / "deploy" / "gpuwarden.example.yaml").anomaly
    sides = {q.name: q.direction for q in anomaly.queries if "gpuwarden_inference_" in q.expr}
    assert sides == {
        "inference_latency_p99": "up",
        "inference_error_ratio": "up",
        "inference_ok_requests_per_second": "down",
    }
    assert all(anomaly.adaptive_scores(name) for name in sides)


@pytest.mark.parametrize(
    ("alerting", "expected"),
    [
        (
            '  inhibit_rules:\n    - source_matchers: [\'node=~"("\']\n      target_matchers: ["a=b"]\n',
            "alerting.inhibit_rules[0].source_matchers[0]: invalid regular expression",
        ),
        (
            '  maintenance_windows:\n    - matchers: ["rack=r07", "no operator"]\n'
            "      starts_at: 2026-12-01T02:00:00Z\n      ends_at: 2026-12-01T04:00:00Z\n",
            "alerting.maintenance_windows[0].matchers[1]: cannot parse matcher",
        ),
        (
            '  maintenance_windows:\n    - matchers: ["rack=r07"]\n'
            "      starts_at: 2026-12-01T04:00:00Z\n      ends_at: 2026-12-01T02:00:00Z\n",
            ":3: alerting.maintenance_windows[0]: ends_at must be after starts_at",
        ),
        (
            '  maintenance_windows:\n    - matchers: ["rack=r07"]\n'
            "      starts_at: 2026-12-01T02:00:00\n      ends_at: 2026-12-01T04:00:00\n",
            "need a timezone",
        ),
    ],
    ids=["bad-regex", "bad-matcher", "window-backwards", "window-naive"],
)
def test_config_validate_refuses_what_serve_could_not_run_naming_file_and_field(
    tmp_path: Path, alerting: str, expected: str
) -> None:
    path = write(tmp_path, "alerting:\n" + alerting)
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert str(path) in output and expected in output


def test_a_secret_written_into_the_file_is_refused_naming_the_reference_to_write(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "slack:\n  channel: C1\n  bot_token: xoxb-123\n"), environ={})
    assert (info.value.field, info.value.line) == ("slack.bot_token", 3)
    assert "{env: SLACK_BOT_TOKEN}" in str(info.value)
    assert "xoxb-123" not in str(info.value)


def test_config_validate_reads_the_inventory_file_the_config_names(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("nodes:\n  - name: n1\n    cluster: c1\n    rack: r1\n    gpus: many\n")
    path = write(tmp_path, f"alerting:\n  inventory_file: {inventory}\n")
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "alerting.inventory_file" in output and "nodes[0].gpus" in output
    inventory.unlink()
    assert "cannot read" in " ".join(runner.invoke(app, ["config", "validate", str(path)]).output.split())


def test_flap_stop_transitions_not_below_start_is_refused_by_validate_not_by_a_serve_traceback(
    tmp_path: Path,
) -> None:
    # `config validate` said ok, then serve died at start with "ValueError: stop_transitions must be below
    # start_transitions (hysteresis)" and a traceback from the engine's FlapPolicy.
    path = tmp_path / "c.yaml"
    path.write_text("alerting:\n  flap_start_transitions: 4\n  flap_stop_transitions: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "flap_stop_transitions (4) must be below flap_start_transitions (4)" in str(err.value)
    path.write_text("alerting:\n  flap_start_transitions: 4\n  flap_stop_transitions: 3\n")
    assert load_config(path).alerting.flap_stop_transitions == 3


def test_the_simulated_fleet_does_not_combine_with_other_inventories(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("alerting:\n  sim_inventory: true\n  slurm_inventory: true\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "sim_inventory (the simulated fleet) cannot be combined with slurm_inventory" in str(err.value)
    assert "alerting" in str(err.value)


def test_a_kubernetes_inventory_needs_the_cluster_name_and_is_one_source(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"alerting:\n  kubernetes_inventory:\n    kubeconfig: {path}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "alerting.kubernetes_inventory.cluster" in str(err.value)
    path.write_text(f"alerting:\n  kubernetes_inventory:\n    cluster: k1\n    kubeconfig: {tmp_path}/nope\n")
    # Whether it is a file is checked where serve reads it (tests/gpuwarden/cli/test_preflight.py): the file
    # may be on serve's machine only, and every command loads the model.
    assert load_config(path).alerting.kubernetes_inventory.kubeconfig == f"{tmp_path}/nope"  # type: ignore[union-attr]
    path.write_text("alerting:\n  slurm_inventory: true\n  kubernetes_inventory:\n    cluster: k1\n")
    both = load_config(path).alerting  # a Slurm training cluster beside a Kubernetes inference one
    assert both.slurm_inventory and both.kubernetes_inventory is not None
    path.write_text("alerting:\n  kubernetes_inventory:\n    cluster: k1\n    gpu_resources: []\n")
    with pytest.raises(ConfigError, match="gpu_resources"):
        load_config(path)
    path.write_text("alerting:\n  kubernetes_inventory:\n    cluster: k1\n")
    assert load_config(path).alerting.kubernetes_inventory.rack_labels[0] == "topology.kubernetes.io/rack"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("alerting:\n  resolve_timeout_seconds: .inf\n", "alerting.resolve_timeout_seconds", "finite"),
        ("alerting:\n  quiet_period_seconds: 1e400\n", "alerting.quiet_period_seconds", "finite"),
        ("anomaly:\n  thresholds:\n    k: .nan\n", "anomaly.thresholds.k", "nan is not a number"),
        ("alerting:\n  remind_after_seconds: -4\n", "alerting.remind_after_seconds", "write 0 or more"),
        ("anomaly:\n  prometheus_url: not a url\n", "anomaly.prometheus_url", "http(s) URL"),
        ("anomaly:\n  alert_url: ftp://x\n", "anomaly.alert_url", "http(s) URL"),
        ("tracing:\n  otlp_endpoint: otel:4318\n", "tracing.otlp_endpoint", "http(s) URL"),
        # These passed `config validate`; the service then reported the source down ("connection
        # refused") or failed at its first request, never naming the setting.
        ("anomaly:\n  prometheus_url: http://127.0.0.1:99999\n", "anomaly.prometheus_url", "99999 is not in"),
        ("anomaly:\n  alert_url: http://:8080\n", "anomaly.alert_url", "names no host"),
        (
            f"slack:\n  chart_prometheus_url: http://{'p' * 64}.example\n",
            "slack.chart_prometheus_url",
            "idna",
        ),
    ],
    ids=[
        "inf",
        "overflow",
        "nan",
        "negative-reminder",
        "url-no-scheme",
        "url-ftp",
        "url-host-port-only",
        "url-port-out-of-range",
        "url-no-host",
        "url-host-label-too-long",
    ],
)
def test_values_no_setting_can_use_are_refused_naming_the_field(
    tmp_path: Path, text: str, field: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.field == field and words in str(info.value)


WINDOW = "      starts_at: 2026-12-01T02:00:00Z\n      ends_at: 2026-12-01T04:00:00Z\n"


@pytest.mark.parametrize(
    ("alerting", "expected"),
    [
        (
            f"  maintenance_windows:\n    - matchers: ['rack=\"\"']\n{WINDOW}",
            ":5: alerting.maintenance_windows[0].matchers: at least one matcher must not match the empty",
        ),
        (
            f"  maintenance_windows:\n    - matchers: ['rack=r1']\n{WINDOW}    - matchers:\n"
            f"        - 'alertname=~\".*\"'\n{WINDOW}",
            ":8: alerting.maintenance_windows[1].matchers: at least one matcher must not match",
        ),
        (
            "  inhibit_rules:\n    - source_matchers: ['severity=~\".*\"']\n      target_matchers: [a=b]\n",
            ":5: alerting.inhibit_rules[0].source_matchers: at least one matcher must not match",
        ),
        (
            "  inhibit_rules:\n    - source_matchers: [a=b]\n      target_matchers: [c=d]\n"
            "      equal: ['']\n",
            ":7: alerting.inhibit_rules[0].equal[0]: empty; write a value or remove the item",
        ),
        (
            "  inhibit_rules:\n    - source_matchers: ['a==b']\n      target_matchers: [c=d]\n",
            ":5: alerting.inhibit_rules[0].source_matchers[0]: cannot parse matcher 'a==b'",
        ),
    ],
    ids=[
        "window-of-an-empty-value",
        "window-of-any-value",
        "inhibit-source-of-any",
        "equal-empty",
        "double-eq",
    ],
)
def test_mutes_that_would_hold_back_every_alert_or_that_are_typos_are_refused_at_their_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alerting: str, expected: str
) -> None:
    path = write(tmp_path, "api:\n  port: 9700\nalerting:\n" + alerting)
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1 and f"{path}{expected}" in " ".join(result.output.split())
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    served = runner.invoke(app, ["serve", "--db", str(tmp_path / "x.db"), "--config", str(path)])
    assert served.exit_code == 78 and f"{path}{expected}" in " ".join(served.output.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpuwarden.yaml"]  # no store, lock or journal


def test_an_inhibition_whose_targets_are_every_alert_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rule = "  inhibit_rules:\n    - source_matchers: [alertname=X]\n      target_matchers: ['a=~\".*\"']\n"
    path = write(tmp_path, startable(monkeypatch, "alerting:\n" + rule))
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 0, result.output  # "while the node is down, mute everything on it"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "anomaly:\n  detectors: [adaptive, bogus]\n",
            ":2: anomaly.detectors: unknown detector(s) ['bogus']",
        ),
        ("api:\n  db: ''\n", ":2: api.db: '' is an in-memory database"),
        ("api:\n  db: 'sqlite:///:memory:'\n", ":2: api.db: 'sqlite:///:memory:' is an in-memory database"),
        (
            "api:\n  listen_address: not an address\n",
            ":2: api.listen_address: cannot listen on 'not an address'",
        ),
        (
            "api:\n  listen_address: 192.0.2.1\n",  # TEST-NET-1 (RFC 5737): no machine has it
            ":2: api.listen_address: cannot listen on '192.0.2.1': not an address of this machine",
        ),
        ("exporter:\n  listen_address: 'a b'\n", ":2: exporter.listen_address: cannot listen on 'a b'"),
        ("anomaly:\n  listen_address: 'a b'\n", ":2: anomaly.listen_address: cannot listen on 'a b'"),
        (
            "alerting:\n  kubernetes_inventory:\n    cluster: k\n    kubeconfig: {tmp}/k.yaml\n",
            ":4: alerting.kubernetes_inventory.kubeconfig: {tmp}/k.yaml is not a kubeconfig: its YAML is str",
        ),
        (
            "tracing:\n  pushgateway_url: http://gw:9091/metrics/job/training\n",
            ":2: tracing.pushgateway_url: not a valid Pushgateway URL 'http://gw:9091/metrics/job/training':"
            " give the gateway's base URL (http://gw:9091,",
        ),
        (
            "tracing:\n  pushgateway_url: ftp://gw\n",
            ":2: tracing.pushgateway_url: not a valid Pushgateway URL",
        ),
        (
            "exporter:\n  simulate: 2x8\nsim:\n  nodes_per_rack: 3\n  gpus_per_node: 4\n",
            ":5: sim.gpus_per_node: 3 nodes of 4 GPUs",
        ),
    ],
    ids=[
        "unknown-detector",
        "db-empty",
        "db-in-memory",
        "api-address",
        "api-address-of-another-machine",
        "exporter-address",
        "anomaly-address",
        "kubeconfig-a-string",
        "pushgateway-push-path",
        "pushgateway-ftp",
        "simulated-fleet-other-than-the-sim-section",
    ],
)
def test_config_validate_refuses_what_serve_exporter_or_anomaly_run_would_refuse(
    tmp_path: Path, text: str, expected: str
) -> None:
    (tmp_path / "k.yaml").write_text("just a string\n")
    path = write(tmp_path, text.replace("{tmp}", str(tmp_path)))
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    squeezed = "".join(result.output.split())  # the console wraps long paths anywhere
    assert "".join(f"{path}{expected.replace('{tmp}', str(tmp_path))}".split()) in squeezed


_PROM = "anomaly:\n  source: prometheus\n  queries:\n"


@pytest.mark.parametrize(
    ("queries", "message"),
    [
        (
            "    - {name: dup, expr: up}\n    - {name: dup, expr: 'up == 0'}\n",
            ":5: anomaly.queries[1].name: 'dup' is also the name of anomaly.queries[0]",
        ),
        ("    - {name: empty, expr: ''}\n", ":4: anomaly.queries[0].expr: is empty; give query 'empty'"),
        ("    - {name: blank, expr: '  '}\n", ":4: anomaly.queries[0].expr: is empty"),
        (
            "    - {name: up, expr: up}\n    - {name: broken, expr: 'rate(DCGM_FI_DEV_POWER_USAGE[5m]'}\n",
            ":5: anomaly.queries[1].expr: query 'broken': '(' at character 5 is not closed",
        ),
        (
            "    - {name: broken2, expr: 'sum by (gpu DCGM_FI_DEV_POWER_USAGE'}\n",
            "anomaly.queries[0].expr: query 'broken2': '(' at character 8 is not closed",
        ),
        ("    - {name: b, expr: 'up{job=\"x}'}\n", 'the quote " at character 8 is not closed'),
        ("    - {name: b, expr: 'sum(up])'}\n", "']' at character 7 closes nothing (the '(' at character 4"),
        (
            "    - {name: r, expr: 'DCGM_FI_DEV_GPU_TEMP{gpu=~\"[0-\"}'}\n",
            "query 'r': the regex '[0-' of =~ at character 25 is broken (unterminated character set)",
        ),
        (
            "    - {name: r, expr: 'up{job!~\"*x\"}'}\n",
            "the regex '*x' of !~ at character 7 is broken (nothing",
        ),
        (
            "    - {name: r, expr: \"up{job=~'a(b'}\"}\n",
            "the regex 'a(b' of =~ at character 7 is broken (missing )",
        ),
    ],
    ids=[
        "same-name",
        "empty-expr",
        "blank-expr",
        "open-paren",
        "by-clause",
        "quote",
        "crossed",
        "regex-set",
        "regex-repeat",
        "regex-group-single-quotes",
    ],
)
def test_anomaly_queries_that_run_would_refuse_or_drop_are_refused_at_load_naming_the_query(
    tmp_path: Path, queries: str, message: str
) -> None:
    path = write(tmp_path, _PROM + queries)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert (f"{path}{message}" if message.startswith(":") else message) in str(err.value), str(err.value)
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output


def test_source_prometheus_without_queries_loads_for_serve_and_validate_says_once_anomaly_run_refuses(
    tmp_path: Path,
) -> None:
    """210aa39 ran serve and the exporter on such a file (only anomaly run reads queries); it was refused at
    load, which stopped both after the upgrade, and config validate said the one problem twice."""
    path = write(tmp_path, "anomaly:\n  source: prometheus\n  prometheus_url: http://127.0.0.1:9090\n")
    assert load_config(path).anomaly.queries == []  # what serve and the exporter load
    result = runner.invoke(app, ["config", "validate", str(path)])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and said.count("error:") == 1, result.output
    assert "anomaly.queries: anomaly run refuses to start: no query to score" in said, result.output


def test_brackets_and_quotes_inside_strings_and_comments_are_not_counted(tmp_path: Path) -> None:
    expr = 'sum by (gpu) (rate(x{job=~"a[(]b|[)]c"}[5m])) # a comment ( [\\n  > bool 1'
    path = write(tmp_path, _PROM + f"    - name: q\n      expr: '{expr}'\n")
    path.write_text(path.read_text().replace("\\\\n", "\\n"))
    assert load_config(path).anomaly.queries[0].name == "q"


@pytest.mark.parametrize(
    "matcher",
    [
        r'{gpu=~"[0-9]+"}',
        r'{job=~"gpu\\.(a|b)"}',  # a PromQL string's \\ is the regex's one backslash
        r"{job=~`gpu\.(a|b)`}",
        r'{name=~"\\p{L}+"}',  # RE2 only: Python's re refuses \p, Prometheus takes it
        r'{name=~"(?<n>a)x\\z"}',
        r'{name=~"[[:alpha:]]+"}',
        r'{name!~"(?i)GPU.*"}',
    ],
)
def test_a_regex_prometheus_accepts_is_never_refused_at_load(tmp_path: Path, matcher: str) -> None:
    path = write(tmp_path, _PROM + f"    - name: q\n      expr: '{matcher.replace(chr(39), chr(39) * 2)}'\n")
    assert load_config(path).anomaly.queries[0].expr.startswith("{")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://run books.example/rb", "host 'run books.example' holds ' '"),
        ("ftp://files.example/rb", "it must start with http:// or https://"),
        ("runbooks.example/rb", "it must start with http:// or https://"),
    ],
    ids=["space-in-host", "ftp", "no-scheme"],
)
def test_a_runbook_base_url_no_link_could_open_is_refused_at_its_line(
    tmp_path: Path, url: str, words: str
) -> None:
    # It passed `config validate`, and each Slack message then linked '<base>/<fault_kind>.yaml', broken.
    path = write(tmp_path, f"api:\n  port: 9700\nslack:\n  runbook_base_url: '{url}'\n")
    result = runner.invoke(app, ["config", "validate", str(path)])
    output = " ".join(result.output.split())
    assert (
        result.exit_code == 1 and f"{path}:4: slack.runbook_base_url: {url!r} is not an http(s) URL" in output
    )
    assert words in output
    path.write_text("slack:\n  runbook_base_url: https://wiki.example/runbooks/\n")
    assert load_config(path).slack.runbook_base_url == "https://wiki.example/runbooks/"


def test_two_bad_entries_of_one_list_hide_neither_each_other_nor_the_next_items_problems(
    tmp_path: Path,
) -> None:
    # The second bad entry of `priorities`, looked for after the first had taken the list out, took out the
    # whole `webhooks` list above it: neither it nor webhooks[1].url was said, until the first was fixed.
    path = write(
        tmp_path,
        "webhooks:\n"
        "  - name: a\n"
        "    url: http://127.0.0.1:9/x\n"
        "    priorities: [p1, P9]\n"
        "  - name: b\n"
        "    url: ftp://x\n",
    )
    result = runner.invoke(app, ["config", "validate", str(path)])
    said = result.stderr
    assert result.exit_code == 1, said
    assert (
        f"{path}:4: webhooks[0].priorities[0]: " in said and f"{path}:4: webhooks[0].priorities[1]: " in said
    )
    assert f"{path}:6: webhooks[1].url: 'ftp://x/' is not an http(s) URL" in said, said
