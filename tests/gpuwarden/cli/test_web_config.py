"""``--web.config.file`` of ``exporter`` and ``serve``: a file that would not serve as written stops the
start, exit 78, naming the file, line and field, before anything listens (or, for serve, makes its store)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gpuwarden.cli import app
from gpuwarden.cli.logs import LogFormat
from gpuwarden.cli.startup import StartupLines
from gpuwarden.cli.web_config import web_config
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.integration.servers import free_port
from tests.tls_certs import TestCerts, make_certs

runner = BuiltCliRunner()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _exporter(web: Path, *more: str) -> tuple[int, str]:
    argv = ["exporter", "--simulate", "1x1", "--listen-address", "127.0.0.1", "--port", str(free_port())]
    result = runner.invoke(app, [*argv, "--web.config.file", str(web), *more])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


REFUSED = [
        pytest.param("tls_server_config:\n  cert_file: {cert}\n  key_file: {other}\n",
                     ":3: tls_server_config.key_file: the private key", id="key-not-the-certs"),
        pytest.param("tls_server_config:\n  cert_file: nowhere.pem\n  key_file: {key}\n",
                     ":2: tls_server_config.cert_file: cannot read", id="missing-cert"),
        pytest.param("basic_auth_users:\n  prom: s3cret\n", ":2: basic_auth_users.prom: not a bcrypt hash",
                     id="password-not-hash"),
        pytest.param("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth: x\n",
                     ":4: tls_server_config.client_auth: unknown field", id="unknown-field"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "said"), REFUSED)
def test_a_web_config_file_that_would_not_serve_stops_the_start_with_exit_78(
    tmp_path: Path, certs: TestCerts, text: str, said: str
) -> None:
    web = tmp_path / "web.yml"
    web.write_text(text.format(cert=certs.cert, key=certs.key, other=certs.other_key))
    code, output = _exporter(web)
    assert code == 78, output
    assert f"error: {web}{said}" in " ".join(output.split())
    assert "serving" not in output


def test_the_refusal_is_a_log_line_with_log_format_json(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  prom: s3cret\n")
    code, output = _exporter(web, "--log-format", "json")
    assert code == 78
    assert "error:" not in output  # no plain line among the JSON ones
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage().startswith(f"{web}:2: basic_auth_users.prom: not a bcrypt hash")


def test_a_missing_web_config_file_is_named(tmp_path: Path) -> None:
    code, output = _exporter(tmp_path / "absent.yml")
    assert code == 78
    assert f"{tmp_path / 'absent.yml'}: cannot read file" in " ".join(output.split())


def test_serve_refuses_a_web_config_file_before_making_its_store(tmp_path: Path, certs: TestCerts) -> None:
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {certs.cert}\n  key_file: {certs.other_key}\n")
    db = tmp_path / "gw.db"
    argv = ["serve", "--db", str(db), "--port", str(free_port()), "--log-format", "text"]
    result = runner.invoke(app, [*argv, "--web.config.file", str(web)], env={"GPUWARDEN_API_TOKEN": "t0ken"})
    assert result.exit_code == 78, result.output
    assert f"error: {web}:3: tls_server_config.key_file: the private key" in " ".join(result.output.split())
    assert not db.exists()
    assert "serving on" not in result.output


def test_basic_auth_over_plain_http_is_warned_of(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text(
        "basic_auth_users:\n  prom: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG\n"
    )
    lines = StartupLines(LogFormat.JSON, logging.getLogger("test"))
    warnings: list[str] = []
    lines.warning = warnings.append  # type: ignore[method-assign]
    assert web_config(web, lines) is not None
    assert warnings == [
        f"{web}: basic_auth_users without tls_server_config: the passwords cross the network readable"
        " (base64, not encrypted); add tls_server_config"
    ]


@pytest.mark.parametrize(("text", "said"), REFUSED)
def test_config_validate_refuses_the_web_config_file_as_the_start_does(
    tmp_path: Path, certs: TestCerts, text: str, said: str
) -> None:
    web = tmp_path / "web.yml"
    web.write_text(text.format(cert=certs.cert, key=certs.key, other=certs.other_key))
    result = runner.invoke(app, ["config", "validate", "--web.config.file", str(web)])
    assert result.exit_code == 1, result.output
    assert f"error: {web}{said}" in " ".join(result.output.split())
    _, started = _exporter(web)
    assert " ".join(result.output.split()) == " ".join(started.split())  # the start's words, each one


def test_config_validate_checks_the_web_config_file_beside_the_configuration(
    tmp_path: Path, certs: TestCerts
) -> None:
    config = tmp_path / "gpuwarden.yaml"
    config.write_text(f"api:\n  db: {tmp_path / 'incidents.db'}\n")
    env = {"GPUWARDEN_API_TOKEN": "t0ken"}
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {certs.cert}\n  key_file: {certs.key}\n")
    result = runner.invoke(app, ["config", "validate", str(config), "--web.config.file", str(web)], env=env)
    assert result.exit_code == 0, result.output
    assert f"{config}: ok" in result.output and f"{web}: ok" in result.output
    web.write_text(f"tls_server_config:\n  cert_file: {certs.cert}\n  key_file: {certs.other_key}\n")
    result = runner.invoke(app, ["config", "validate", str(config), "--web.config.file", str(web)], env=env)
    assert result.exit_code == 1, result.output
    assert f"{config}: ok" in result.output
    assert f"error: {web}:3: tls_server_config.key_file: the private key" in " ".join(result.output.split())


def test_config_validate_warns_of_basic_auth_over_plain_http(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text(
        "basic_auth_users:\n  prom: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG\n"
    )
    result = runner.invoke(app, ["config", "validate", "--web.config.file", str(web)])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "basic_auth_users without tls_server_config" in result.output


def test_config_validate_checks_a_web_config_file_given_alone_alone(tmp_path: Path, certs: TestCerts) -> None:
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {certs.cert}\n  key_file: {certs.key}\n")
    result = runner.invoke(
        app, ["config", "validate", "--web.config.file", str(web)], env={"GPUWARDEN_API_TOKEN": ""}
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{web}: ok"  # not the defaults, which want a token serve would need


@pytest.mark.parametrize(
    "command",
    [["exporter", "--simulate", "1x1"], ["serve", "--log-format", "text"], ["inference-server"]],
    ids=["exporter", "serve", "inference-server"],
)
def test_a_refused_configuration_says_the_web_configuration_files_problems_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """A bad setting in ``--config`` and a misspelt field in ``--web.config.file``: the start said only the
    setting, so the next start, the setting mended, stopped again on the web configuration file (``config
    validate`` said both)."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t0ken-for-the-test")
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "gw.yaml"
    config.write_text("exporter:\n  port: 99999\n", encoding="utf-8")
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  certfile: c.pem\n", encoding="utf-8")
    result = runner.invoke(app, [*command, "--config", str(config), "--web.config.file", str(web)])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 78, result.output
    assert f"error: {config}:2: exporter.port: 99999 is more than 65535" in said, said
    assert f"error: {web}:2: tls_server_config.certfile: unknown field" in said, said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gw.yaml", "web.yml"]  # no store made
