"""What a server command says of a listen address it cannot use, as an operator coming from
dcgm-exporter or Prometheus writes one."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuwarden.cli import app
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.integration.servers import free_port

runner = BuiltCliRunner()


@pytest.mark.parametrize(
    ("command", "given", "expected"),
    [
        (
            ["exporter", "--simulate", "1x1", "--listen-address"],
            ":{port}",
            "give the address alone (0.0.0.0) and the port as --port {port}",
        ),
        (
            ["exporter", "--simulate", "1x1", "--listen-address"],
            "0.0.0.0:{port}",
            "give the address alone (0.0.0.0) and the port as --port {port}",
        ),
        (
            ["inference-server", "--host"],
            "localhost:{port}",
            "give the address alone (localhost) and the port as --port {port}",
        ),
        (
            ["exporter", "--simulate", "1x1", "--listen-address"],
            "[::1]:{port}",
            "give the address alone (::1) and the port as --port {port}",
        ),
        (
            ["exporter", "--simulate", "1x1", "--listen-address"],
            "[::1]",
            "brackets enclose an IPv6 address in a URL (http://[::1]:PORT), not here;"
            " give it without them (::1)",
        ),
    ],
    ids=[
        "dcgm-exporter-port-alone",
        "address-and-port",
        "name-and-port",
        "ipv6-and-port",
        "ipv6-in-brackets",
    ],
)
def test_an_address_written_with_its_port_or_in_brackets_says_what_to_give(
    command: list[str], given: str, expected: str
) -> None:
    """``exporter --listen-address :9400`` (dcgm-exporter's ``--address :9400``, Prometheus'
    ``--web.listen-address``) and ``--listen-address '[::1]'`` (as the start line prints an IPv6 address)
    said only "cannot listen on it: Name or service not known"."""
    port = free_port()
    value = given.format(port=port)
    result = runner.invoke(app, [*command, value, "--port", str(port + 1)])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 78, result.output
    assert said.startswith(f"error: {command[-1]} '{value}': cannot listen on it: "), said
    assert said.endswith(expected.format(port=port)), said


def test_a_setting_written_with_its_port_names_the_port_setting(tmp_path: Path) -> None:
    """The file's ``exporter.listen_address: 0.0.0.0:9400`` is said at its line, the port to write as
    ``exporter.port``."""
    path = tmp_path / "gw.yaml"
    path.write_text("exporter:\n  listen_address: '0.0.0.0:9400'\n", encoding="utf-8")
    result = runner.invoke(app, ["config", "validate", str(path)])
    said = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert f"{path}:2: exporter.listen_address: cannot listen on '0.0.0.0:9400': the port is not" in said
    assert "give the address alone (0.0.0.0) and the port as exporter.port: 9400" in said
