"""Which ``GPUWARDEN_`` variables the configuration refuses as meant for a setting that does not exist, and
which it leaves alone: Kubernetes' service links and the variables the file reads as secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpuwarden.cli import app
from gpuwarden.config import load_config
from gpuwarden.errors import ConfigError
from tests.gpuwarden.startable import startable


def service_links(service: str, cluster_ip: str, ports: list[tuple[str, int, str]]) -> dict[str, str]:
    """The variables the kubelet gives every container of the namespace for a Service (its documented
    format): ``ports`` are (name, port, protocol); the first port also gets the Docker-link ``<SVC>_PORT``."""
    prefix = service.upper().replace("-", "_")
    out = {f"{prefix}_SERVICE_HOST": cluster_ip, f"{prefix}_SERVICE_PORT": str(ports[0][1])}
    host = f"[{cluster_ip}]" if ":" in cluster_ip else cluster_ip
    for i, (name, port, protocol) in enumerate(ports):
        url = f"{protocol.lower()}://{host}:{port}"
        if name:
            out[f"{prefix}_SERVICE_PORT_{name.upper().replace('-', '_')}"] = str(port)
        if i == 0:
            out[f"{prefix}_PORT"] = url
        link = f"{prefix}_PORT_{port}_{protocol.upper()}"
        out |= {link: url, f"{link}_PROTO": protocol.lower(), f"{link}_PORT": str(port)}
        out[f"{link}_ADDR"] = cluster_ip
    return out


SERVICES = {
    "gpuwarden": ("10.96.0.12", [("http", 8080, "TCP")]),
    "gpuwarden-api": ("10.96.0.13", [("", 8080, "TCP"), ("slack-events", 8443, "TCP")]),
    "gpuwarden-exporter": ("10.96.0.14", [("metrics", 9400, "TCP")]),
    "gpuwarden-anomaly": ("fd00:10:96::15", [("metrics", 9701, "TCP"), ("otlp", 4317, "UDP")]),
    "gpuwarden-slack": ("10.96.0.16", [("", 443, "SCTP")]),
}
LINKS = {
    name: value for s, (ip, ports) in SERVICES.items() for name, value in service_links(s, ip, ports).items()
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("variable", "value"), sorted(LINKS.items()), ids=sorted(LINKS))
def test_each_kubernetes_service_link_variable_is_not_taken_for_a_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    cfg = load_config(write(tmp_path, "api:\n  port: 9700\n"))
    assert (cfg.api.port, cfg.exporter.port, cfg.anomaly.port) == (9700, 9400, load_config(None).anomaly.port)


def test_serve_exporter_and_anomaly_configs_validate_in_a_namespace_with_gpuwarden_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in LINKS.items():
        monkeypatch.setenv(name, value)
    text = startable(monkeypatch, "exporter:\n  port: 9400\n")
    result = CliRunner().invoke(app, ["config", "validate", str(write(tmp_path, text))])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("GPUWARDEN_API__TOKN", "x", "api.tokn: unknown field"),
        ("GPUWARDEN_APII__PORT", "tcp://10.96.0.13:8080", "no section 'apii'"),
        ("GPUWARDEN_API_PORT", "9000", "write GPUWARDEN_API__PORT (two underscores"),
        ("GPUWARDEN_EXPORTER_PORT", "tcp://gpuwarden-exporter:9400", "write GPUWARDEN_EXPORTER__PORT"),
        ("GPUWARDEN_PORT", "tcp://10.96.0.12:99999", "port is a field of"),
        ("GPUWARDEN_API_PORT", "http://10.96.0.13:8080", "write GPUWARDEN_API__PORT"),
        ("GPUWARDEN_API__PORT_8080_TCP", "tcp://10.96.0.13:8080", "api.port_8080_tcp: unknown field"),
    ],
    ids=[
        "nested-typo",
        "section-typo-with-a-link-value",
        "one-underscore-with-a-plain-port",
        "link-name-with-a-host-name",
        "link-name-with-a-port-past-65535",
        "link-name-with-a-url-of-no-protocol-kubernetes-names",
        "nested-name-shaped-like-a-link",
    ],
)
def test_names_shaped_like_service_links_are_refused_when_kubernetes_would_not_have_written_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, words: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, ""))
    assert words in str(info.value) and variable in str(info.value)


SECRET_REFERENCE = "slack:\n  bot_token: {env: GPUWARDEN_SLACK_BOT_TOKEN}\n"


def test_a_variable_the_file_reads_as_a_secret_is_not_taken_for_a_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUWARDEN_SLACK_BOT_TOKEN", "xoxb-1")
    cfg = load_config(write(tmp_path, SECRET_REFERENCE))
    assert cfg.slack.bot_token is not None and cfg.slack.bot_token.get_secret_value() == "xoxb-1"


def test_the_same_variable_is_refused_when_no_secret_reference_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUWARDEN_SLACK_BOT_TOKEN", "xoxb-1")  # it sets nothing: the token stays unset
    with pytest.raises(ConfigError, match="write GPUWARDEN_SLACK__BOT_TOKEN"):
        load_config(write(tmp_path, "slack:\n  channel: '#gpu'\n"))


def test_a_field_of_several_sections_lists_every_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUWARDEN_PORT", "9700")
    with pytest.raises(ConfigError) as info:
        load_config(None)
    assert (
        "port is a field of exporter, api, anomaly: write GPUWARDEN_EXPORTER__PORT, GPUWARDEN_API__PORT or"
        " GPUWARDEN_ANOMALY__PORT" in str(info.value)
    )
