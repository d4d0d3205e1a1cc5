"""The users and headers of the web configuration file are read again when it changes, as exporter-toolkit
reads the file for each request: a rotated password is taken without a restart, an edit that would not
serve as written keeps the last good ones with one warning naming the file, line and field."""

from __future__ import annotations

import logging
from pathlib import Path

import bcrypt
import pytest

from gpuwarden import tls_reload
from gpuwarden.webconfig import load_web_config
from tests.tls_certs import TestCerts, make_certs

OLD = bcrypt.hashpw(b"old", bcrypt.gensalt(4)).decode()
NEW = bcrypt.hashpw(b"new", bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(autouse=True)
def every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tls_reload, "CHECK_SECONDS", 0.0)  # each request looks at the file


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_rotated_users_and_headers_are_read_again_and_a_broken_edit_keeps_the_last_good_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  prom: '{OLD}'\n")
    web = load_web_config(path)
    assert web.access is not None
    assert web.access().users == {"prom": OLD}

    path.write_text(
        f"http_server_config:\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  prom: '{NEW}'\n"
    )
    rotated = web.access()
    assert rotated.users == {"prom": NEW}
    assert rotated.headers == {"X-Frame-Options": "deny"}

    caplog.set_level(logging.WARNING, logger="gpuwarden.webconfig")
    path.write_text("basic_auth_users:\n  prom: new\n")  # the password, not its hash
    for _ in range(3):
        assert web.access() is rotated
    warned = _warnings(caplog)
    assert len(warned) == 1, warned  # once, not once per request
    assert f"{path}:2" in warned[0] and "basic_auth_users.prom" in warned[0], warned
    assert "still using" in warned[0]

    path.write_text(f"basic_auth_users:\n  ops: '{OLD}'\n")  # fixed: read again
    assert web.access().users == {"ops": OLD}
    path.write_text("")  # emptied: no basic auth any more, as exporter-toolkit reads it
    assert web.access().users == {}


def test_a_changed_tls_section_waits_for_a_restart_and_a_broken_one_is_refused(
    tmp_path: Path, certs: TestCerts, caplog: pytest.LogCaptureFixture
) -> None:
    tls = f"tls_server_config:\n  cert_file: {certs.cert}\n  key_file: {certs.key}\n"
    path = tmp_path / "web.yml"
    path.write_text(tls + f"basic_auth_users:\n  prom: '{OLD}'\n")
    web = load_web_config(path)
    assert web.access is not None
    caplog.set_level(logging.WARNING, logger="gpuwarden.webconfig")

    path.write_text(tls + "  min_version: TLS13\n" + f"basic_auth_users:\n  prom: '{NEW}'\n")
    assert web.access().users == {"prom": NEW}
    warned = _warnings(caplog)
    assert len(warned) == 1 and "restart" in warned[0] and "tls_server_config" in warned[0], warned

    caplog.clear()
    path.write_text(tls + f"  key_file: {certs.other_key}\nbasic_auth_users:\n  ops: '{OLD}'\n")
    assert web.access().users == {"prom": NEW}  # a duplicate key: the file is refused
    path.write_text(tls.replace(str(certs.key), str(certs.other_key)) + f"basic_auth_users:\n  o: '{OLD}'\n")
    assert web.access().users == {"prom": NEW}  # the key is not the certificate's: as a restart refuses it
    warned = _warnings(caplog)
    assert len(warned) == 2, warned
    assert "tls_server_config.key_file" in warned[1] and "is not the key of the certificate" in warned[1]
