"""What `gpuwarden serve` refuses before it makes any file: matchers, inventory settings, ports, a newer
database, write tokens and settings it cannot use; and a port another process holds."""

from __future__ import annotations

import errno
import json
import socket
from pathlib import Path

import pytest
import yaml
from alembic.script import ScriptDirectory
from sqlalchemy import text

from alerting.db import make_engine
from alerting.migrate import alembic_config, upgrade
from gpuwarden.cli import app, machine_checks
from gpuwarden.errors import ConfigError
from tests.gpuwarden.cli.built_runner import BuiltCliRunner

runner = BuiltCliRunner()


def test_serve_refuses_a_config_whose_matcher_does_not_parse_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    config = tmp_path / "gw.yaml"
    config.write_text(
        "alerting:\n  inhibit_rules:\n    - source_matchers: ['node=~\"(\"']\n      target_matchers: [a=b]\n"
    )
    result = runner.invoke(
        app, ["serve", "--log-format", "text", "--db", str(tmp_path / "x.db"), "--config", str(config)]
    )
    assert result.exit_code == 78
    assert "alerting.inhibit_rules[0].source_matchers[0]" in " ".join(result.output.split())


def test_every_bad_matcher_of_a_list_is_said_at_its_own_index_by_serve_and_validate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``source_matchers: [a==b, c==d]`` said only a==b's problem: fixed, c==d's came at the next run. Each
    is said at its index, as a list's other problems are, those of the other lists too."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    config = tmp_path / "gw.yaml"
    config.write_text(
        "alerting:\n  inhibit_rules:\n    - source_matchers: [a==b, c==d]\n"
        "      target_matchers: [x=y, e==f]\n"
        "  maintenance_windows:\n    - matchers: [rack=r1, g==h]\n"
        "      starts_at: 2026-12-01T02:00:00Z\n      ends_at: 2026-12-01T04:00:00Z\n"
    )
    served = runner.invoke(
        app, ["serve", "--log-format", "text", "--db", str(tmp_path / "x.db"), "--config", str(config)]
    )
    validated = runner.invoke(app, ["config", "validate", str(config)])
    assert served.exit_code == 78 and validated.exit_code == 1, validated.output
    for field in (
        "alerting.inhibit_rules[0].source_matchers[0]: cannot parse matcher 'a==b'",
        "alerting.inhibit_rules[0].source_matchers[1]: cannot parse matcher 'c==d'",
        "alerting.inhibit_rules[0].target_matchers[1]: cannot parse matcher 'e==f'",
        "alerting.maintenance_windows[0].matchers[1]: cannot parse matcher 'g==h'",
    ):
        assert field in " ".join(served.output.split()), served.output
        assert field in " ".join(validated.output.split()), validated.output


def test_serve_lists_a_store_directory_that_does_not_exist_with_its_other_problems_as_validate_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # serve listed the matcher alone, then failed on the store's lock file in other words than validate's.
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    config = tmp_path / "gw.yaml"
    config.write_text(
        f"api:\n  db: {tmp_path / 'nodir' / 'x.db'}\n"
        "alerting:\n  inhibit_rules:\n    - source_matchers: [a==b]\n      target_matchers: [c=d]\n"
    )
    served = " ".join(
        runner.invoke(app, ["serve", "--log-format", "text", "--config", str(config)]).output.split()
    )
    validated = " ".join(runner.invoke(app, ["config", "validate", str(config)]).output.split())
    said = (
        f"api.db: {tmp_path / 'nodir' / 'x.db'}: its directory {tmp_path / 'nodir'} does not exist; make it"
    )
    assert said in served and said in validated, served
    assert "alerting.inhibit_rules[0].source_matchers[0]" in served
    assert not (tmp_path / "nodir").exists()


def test_serve_logs_a_maintenance_window_that_already_ended_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    config = tmp_path / "gw.yaml"
    config.write_text(
        "alerting:\n  inventory_file: missing.yaml\n  maintenance_windows:\n    - matchers: [rack=r07]\n"
        "      starts_at: 2020-01-01T00:00:00Z\n      ends_at: 2020-01-01T02:00:00Z\n"
    )
    result = runner.invoke(app, ["serve", "--db", str(tmp_path / "x.db"), "--config", str(config)])
    output = " ".join(result.output.split())
    # It went on past the window to the next check, the inventory file, which stops it here.
    assert result.exit_code == 78 and "alerting.inventory_file" in output, output
    logged = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [(r["level"], r["msg"].split(", so")[0]) for r in logged if r["level"] == "warning"] == [
        (
            "warning",
            f"{config}:6: alerting.maintenance_windows[0].ends_at: the window ended at 2020-01-01T02:00:00Z",
        )
    ]


@pytest.mark.parametrize(
    ("alerting", "expected"),
    [
        ({"inventory_file": "{tmp}/missing.yaml"}, "alerting.inventory_file"),
        ({"inventory_file": "{tmp}"}, "alerting.inventory_file"),
        (
            {"kubernetes_inventory": {"cluster": "k", "kubeconfig": "{tmp}/kubeconfig"}},
            "inventory.kubeconfig:",
        ),
    ],
    ids=["missing-inventory", "inventory-is-a-directory", "kubeconfig-not-yaml"],
)
def test_a_wrong_inventory_setting_stops_serve_before_it_makes_any_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alerting: dict[str, object], expected: str
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\nclusters: [\n")  # a YAML syntax error
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"alerting": alerting}).replace("{tmp}", str(tmp_path)))
    store = tmp_path / "store"
    store.mkdir()
    result = runner.invoke(
        app, ["serve", "--log-format", "text", "--db", str(store / "x.db"), "--config", str(config)]
    )
    output = " ".join(result.output.split())
    assert result.exit_code == 78 and expected in output and "Traceback" not in output, output
    assert list(store.iterdir()) == []  # no store, lock or journal


@pytest.mark.parametrize("port", ["83537", "-5", "0"])
def test_serve_refuses_a_port_out_of_range_before_making_any_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, port: str
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    result = runner.invoke(
        app, ["serve", "--log-format", "text", "--db", str(tmp_path / "x.db"), "--port", port]
    )
    assert result.exit_code == 2 and "--port" in result.output  # a usage error, as click gives them
    assert list(tmp_path.iterdir()) == []


def test_serve_refuses_a_database_a_newer_version_migrated_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    db = tmp_path / "x.db"
    sql = make_engine(str(db))
    upgrade(sql)
    with sql.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    sql.dispose()
    result = runner.invoke(app, ["serve", "--log-format", "text", "--db", str(db)])
    output = " ".join(result.output.split())
    assert result.exit_code == 78 and isinstance(result.exception, SystemExit), output
    assert output.count("error:") == 1 and "Traceback" not in output, output
    assert (
        f"error: --db '{db}': cannot open the store: the database was migrated by a newer gpuwarden" in output
    )
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert f"'0099_future' is unknown to this version, which knows up to '{head}'" in output
    assert "newer gpuwarden" in output and "restore a backup" in output


@pytest.mark.parametrize("token", ["", "  ", "tok\n"], ids=["empty", "blank", "newline"])
def test_serve_refuses_a_write_token_no_request_could_match_or_every_one_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", token)
    result = runner.invoke(app, ["serve", "--log-format", "text", "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 78 and "GPUWARDEN_API_TOKEN" in result.output
    assert list(tmp_path.iterdir()) == []


def test_serve_refuses_a_write_token_no_client_can_send_as_the_cli_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clients send header values as ASCII: with this token serve started and answered every write 401."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "tökén")
    result = runner.invoke(app, ["serve", "--log-format", "text", "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 78
    said = " ".join(result.output.split())
    assert "GPUWARDEN_API_TOKEN: holds characters an HTTP header cannot carry" in said and "tökén" not in said
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "config", "expected"),
    [
        (["--db", "{store}"], "", "--db '{store}': is a directory"),
        (["--db", "sqlite://"], "", "--db 'sqlite://': is an in-memory database"),
        (["--db", ":memory:"], "", "--db ':memory:': is an in-memory database"),
        ([], "api:\n  db: 'sqlite:///:memory:'\n", "c.yaml:2: api.db: 'sqlite:///:memory:' is an in-memory"),
        (
            ["--db", "sqlite:///file:{store}/x.db?uri=true"],
            "",
            "--db 'sqlite:///file:{store}/x.db?uri=true': opens its file as a SQLite URI",
        ),
        (  # psql's way to say a server: it was taken for a SQLite file's name, made in the working directory
            ["--db", "host=db.example user=gw password=S3cret dbname=gw"],
            "",
            "--db 'host=db.example user=gw password=*** dbname=gw': is a libpq connection string, not a"
            " file; give it as a URL: postgresql+psycopg://gw@db.example/gw",
        ),
        (
            [],
            "api:\n  db: \"dbname=gw password='S3 cret'\"\n",
            "c.yaml:2: api.db: 'dbname=gw password=***' is a libpq connection string, not a file;",
        ),
        (  # an @ of the password left unescaped: psycopg said "failed to resolve host 'S3cret@127.0.0.1'"
            ["--db", "postgresql+psycopg://gw:S3@S3cret@127.0.0.1:9/gw"],
            "",
            "--db 'postgresql+psycopg://gw:***@127.0.0.1:9/gw': has an @ in its password that is not"
            " percent-encoded, so what follows that @ would be taken for the host; write each @ of the"
            " password as %40",
        ),
        (
            [],
            "api:\n  db: postgresql+psycopg://gw:S3@S3x@db.invalid/gw\n",
            "c.yaml:2: api.db: 'postgresql+psycopg://gw:***@db.invalid/gw' has an @ in its password",
        ),
        (
            ["--db", "{db}"],
            "api:\n  listen_address: not an address\n",
            "c.yaml:2: api.listen_address: cannot",
        ),
        (["--host", "a b", "--db", "{db}"], "", "--host 'a b': cannot listen on it:"),
        (  # TEST-NET-1 (RFC 5737): no machine has it
            ["--host", "192.0.2.1", "--db", "{db}"],
            "",
            "--host '192.0.2.1': cannot listen on it: not an address of this machine",
        ),
        (
            ["--db", "{db}"],
            "alerting:\n  journal_dir: /proc/gpuwarden\n",
            "c.yaml:2: alerting.journal_dir: /proc/gpuwarden:",
        ),
        (
            ["--db", "{db}"],
            "alerting:\n  kubernetes_inventory:\n    cluster: k\n    kubeconfig: {store}/../k.yaml\n",
            "is not a kubeconfig: its YAML is str",
        ),
    ],
    ids=[
        "db-a-directory",
        "db-in-memory-url",
        "db-in-memory",
        "db-in-memory-setting",
        "db-a-sqlite-uri",
        "db-a-libpq-string",
        "db-a-libpq-string-setting",
        "db-password-with-an-at",
        "db-password-with-an-at-setting",
        "address",
        "host",
        "host-of-another-machine",
        "journal-in-proc",
        "kubeconfig-a-string",
    ],
)
def test_serve_refuses_a_setting_it_cannot_use_before_it_makes_any_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], config: str, expected: str
) -> None:
    if "/proc" in config and not Path("/proc/self").exists():
        pytest.skip("no /proc")
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "store"
    store.mkdir()
    (tmp_path / "k.yaml").write_text("just a string\n")  # YAML, but not a kubeconfig's mapping
    (tmp_path / "c.yaml").write_text(config.replace("{store}", str(store)))
    argv = [a.replace("{store}", str(store)).replace("{db}", str(store / "x.db")) for a in args]
    result = runner.invoke(app, ["serve", "--log-format", "text", "--config", "c.yaml", *argv])
    output = " ".join(result.output.split())
    assert result.exit_code == 78 and "Traceback" not in output, output
    assert expected.replace("{store}", str(store)) in output and "S3" not in output
    assert list(store.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "c.yaml",
        "k.yaml",
        "store",
    ]


def test_serve_on_a_taken_port_leaves_an_older_store_unmigrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve migrated the store, then failed to bind: the release being rolled back to refused the store."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    db = tmp_path / "x.db"
    older = make_engine(str(db))
    upgrade(older, "0004_incident_last_opened")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "--log-format", "text", "--db", str(db), "--port", str(port)])
    assert result.exit_code == 75 and f"--port {port}: cannot listen" in " ".join(result.output.split())
    with older.connect() as conn:
        assert (
            conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            == "0004_incident_last_opened"
        )
    older.dispose()


@pytest.mark.parametrize("flag", [True, False], ids=["option", "setting"])
def test_serve_names_the_port_when_another_process_listens_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: bool
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "c.yaml").write_text(f"api:\n  port: {port}\n")
        args = ["--port", str(port)] if flag else ["--config", str(tmp_path / "c.yaml")]
        result = runner.invoke(app, ["serve", "--log-format", "text", "--db", str(tmp_path / "x.db"), *args])
    output = " ".join(result.output.split())
    named = f"--port {port}" if flag else f"{tmp_path / 'c.yaml'}:2: api.port"
    assert (
        result.exit_code == 75
        and f"{named}: cannot listen on 127.0.0.1:{port}: Address already in use" in output
    )


def test_a_port_this_user_may_not_listen_on_is_not_said_to_be_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """Port 80 without root (or CAP_NET_BIND_SERVICE) said "another process listens there; stop it", and
    people looked for a process that was not there."""

    class Refused(socket.socket):
        def bind(self, address: object) -> None:
            raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(machine_checks.socket, "socket", Refused)
    with pytest.raises(ConfigError) as refused:
        machine_checks.listen_socket("127.0.0.1", 80, "--host", "--port")
    assert str(refused.value) == (
        "--port 80: cannot listen on 127.0.0.1:80: Permission denied; this user may not listen there (a port"
        " under 1024 needs root or CAP_NET_BIND_SERVICE); choose a port from 1024 up"
    )
    assert refused.value.outside is None  # the configuration's: exit 78, a restart cannot help


def test_a_standby_that_takes_the_lock_at_once_does_not_say_it_waits_for_its_taken_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve --standby`` on a port another program holds, no serve active on the store: it said "standby:
    127.0.0.1:PORT is in use (by the active serve on this host?); waiting with the port closed", then took
    the lock at once and stopped on the port in use (exit 75), waiting for nothing."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["serve", "--log-format", "text", "--db", str(tmp_path / "x.db"), "--port", str(port)]
        result = runner.invoke(app, [*argv, "--standby"])
    output = " ".join(result.output.split())
    assert result.exit_code == 75, result.output
    assert f"--port {port}: cannot listen on 127.0.0.1:{port}: Address already in use" in output
    assert "waiting with the port closed" not in output, output
