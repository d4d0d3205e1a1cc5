"""`gpuwarden serve`'s store and journal: stores it cannot open, the journal's directory and where it lies
beside SQLite URLs and symlinks, journals of earlier releases, and what it says of the store at start."""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerting.instance_lock import FileLock, store_lock
from alerting.journal import KIND_POSTABLE, AcceptJournal, applied_offset
from gpuwarden.cli import app
from gpuwarden.cli.machine_checks import check_store, check_store_directory
from gpuwarden.cli.preflight import check_serve
from gpuwarden.cli.serve_cmd import build_service, take_locks
from gpuwarden.cli.serve_journal import build_applier, journal_dir
from gpuwarden.config import GpuwardenConfig
from gpuwarden.errors import ConfigError
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.integration.servers import free_port

runner = BuiltCliRunner()


@pytest.mark.parametrize(
    ("db", "expected", "status"),
    [
        (
            "postgresql+psycopg://u:pw-secret@127.0.0.1:1/x",
            "--db 'postgresql+psycopg://u:***@127.0.0.1:1/x': cannot open the store",
            69,  # down: a later start may find it up
        ),
        ("mysql://host/x", "--db 'mysql://host/x': not a database gpuwarden can use", 78),
        (
            "{tmp}/missing/dir/x.db",
            "--db '{tmp}/missing/dir/x.db': its directory {tmp}/missing/dir does not exist; make it",
            78,
        ),
    ],
    ids=["postgres-down", "unknown-database", "sqlite-no-directory"],
)
def test_serve_refuses_a_store_it_cannot_open_naming_it_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: str, expected: str, status: int
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    result = runner.invoke(
        app, ["serve", "--log-format", "text", "--db", db.format(tmp=tmp_path), "--log-format", "text"]
    )
    output = " ".join(result.output.split())
    assert result.exit_code == status
    assert "--db: " not in output and "pw-secret" not in output  # the store said once, as every option is
    assert f"error: {expected.format(tmp=tmp_path)}" in output, output


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("itself", "is not a SQLite database (it does not start with SQLite's header)"),
        ("fifo", "is not a regular file"),
    ],
    ids=["the-config-file", "fifo"],
)
def test_a_store_file_that_is_no_database_is_refused_by_validate_and_serve_before_any_file_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, said: str
) -> None:
    """validate said ok; serve refused it only once it opened the store (SQLite's "file is not a
    database", "disk I/O error"), with the store's lock file and journal directory made beside it."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    config = tmp_path / "c.yaml"
    store = config if kind == "itself" else tmp_path / "fifo.db"
    if kind == "fifo":
        os.mkfifo(store)
    config.write_text(f"api:\n  db: {store}\n")
    before = sorted(tmp_path.iterdir())
    for args in (
        ["config", "validate", str(config)],
        ["serve", "--log-format", "text", "--config", str(config)],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == (1 if args[0] == "config" else 78), result.output
        assert f"error: {config}:2: api.db: {store} {said}, so serve could not open the store in it" in (
            " ".join(result.stderr.split())
        ), result.stderr
    assert sorted(tmp_path.iterdir()) == before


def test_serve_names_the_journal_dir_when_it_cannot_use_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    (tmp_path / "afile").write_text("not a directory")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"alerting": {"journal_dir": str(tmp_path / "afile" / "journal")}}))
    result = runner.invoke(
        app, ["serve", "--log-format", "text", "--db", str(tmp_path / "x.db"), "--config", str(config)]
    )
    output = " ".join(result.output.split())
    assert result.exit_code == 78
    assert "alerting.journal_dir" in output and "api.db" not in output


def _damaged_journal(directory: Path) -> Path:
    """A journal of three unapplied records whose second is damaged; its segment file."""
    journal = AcceptJournal(directory, lambda _jid: 0)
    first = journal.append(KIND_POSTABLE, b'[{"labels": {"alertname": "A"}}]', 1)
    for _ in range(2):
        journal.append(KIND_POSTABLE, b'[{"labels": {"alertname": "B"}}]', 1)
    journal.close()
    (segment,) = directory.glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[first + 20] ^= 0xFF
    segment.write_bytes(bytes(data))
    return segment


@pytest.mark.parametrize("configured", [False, True], ids=["derived-dir", "alerting.journal_dir"])
def test_a_damaged_journal_names_its_file_and_the_setting_only_when_the_config_sets_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, configured: bool
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    monkeypatch.chdir(tmp_path)
    directory = tmp_path / ("journal" if configured else "x.db.journal")
    segment = _damaged_journal(directory)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"alerting": {"journal_dir": str(directory)} if configured else {}}))
    result = runner.invoke(app, ["serve", "--log-format", "text", "--db", "x.db", "--config", str(config)])
    output = " ".join(result.output.split())
    assert result.exit_code == 78 and "Traceback" not in output, output
    assert f"journal{segment}:" in "".join(output.split()) and "readable records follow them" in output
    assert f"move{directory}aside" in "".join(output.split())
    assert ("alerting.journal_dir" in output) == configured
    assert (str(config) in output) == configured


def test_the_journal_directory_is_logged_as_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    db = "store.db"
    engine, _, _, _ = build_service(GpuwardenConfig(), db)
    with caplog.at_level(logging.INFO, logger="gpuwarden.serve"):
        build_applier(GpuwardenConfig(), db, engine).journal.close()
    logged = [r.getMessage() for r in caplog.records if r.name == "gpuwarden.serve"]
    assert logged == [f"journal: {tmp_path / 'store.db.journal'}"]


def test_a_sqlite_store_reached_through_a_symlink_has_the_journal_of_the_file_it_points_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--db alias.db`` (a link to incidents.db) got alias.db.journal: each name its own journal."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "alias.db").symlink_to(tmp_path / "data" / "incidents.db")
    expected = tmp_path / "data" / "incidents.db.journal"
    for db in ("alias.db", str(tmp_path / "alias.db"), "sqlite:///alias.db", "data/incidents.db"):
        assert journal_dir(GpuwardenConfig(), db) == expected, db


@pytest.mark.parametrize("url", ["sqlite+pysqlite:///{}", "sqlite:///{}?timeout=5"], ids=["driver", "query"])
def test_a_sqlite_url_with_a_driver_or_a_query_keeps_its_journal_beside_the_store_lock(
    tmp_path: Path, url: str
) -> None:
    """serve read only a bare ``sqlite:///path`` as a file: with a driver the journal was gpuwarden-journal
    under the working directory (config validate, which reads it as a file, did not warn of that); with a
    query it was named after the query (``s.db?timeout=5.journal``). The store lock is beside the file."""
    db = url.format(tmp_path / "s.db")
    lock = store_lock(db, "me")
    assert isinstance(lock, FileLock)
    assert journal_dir(GpuwardenConfig(), db) == lock.path.with_suffix(".journal")


def test_a_percent_encoded_sqlite_url_keeps_its_journal_beside_the_store_lock(tmp_path: Path) -> None:
    """SQLAlchemy decodes the URL's path (``my%20dir`` is the directory ``my dir``), and so the store and its
    lock are there; serve read it undecoded: the journal went beside ``my%20dir/s.db`` (a directory it made),
    and ``config validate`` and serve refused the URL, saying that directory did not exist."""
    (tmp_path / "my dir").mkdir()
    db = f"sqlite:///{tmp_path}/my%20dir/s.db"
    lock = store_lock(db, "me")
    assert isinstance(lock, FileLock) and lock.path == tmp_path / "my dir" / "s.db.lock"
    assert journal_dir(GpuwardenConfig(), db) == lock.path.with_suffix(".journal")
    check_store_directory(db, "api.db")  # no ConfigError: the directory exists


@pytest.mark.parametrize(
    "url",
    ["sqlite:///file:s.db?uri=true", "sqlite:///file:s.db?mode=rwc&uri=1&timeout=5"],
    ids=["uri", "more"],
)
def test_a_sqlite_file_uri_is_refused_as_its_lock_would_not_guard_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """With ``uri=true`` SQLite opens ``s.db``, but serve took the store lock and kept the journal as for a
    file ``file:s.db``: a second serve given ``s.db`` took its own lock and ran active on the same store."""
    monkeypatch.chdir(tmp_path)
    lock = store_lock(url, "me")
    assert isinstance(lock, FileLock) and lock.path != tmp_path / "s.db.lock"  # why it is refused
    with pytest.raises(ConfigError) as refused:
        check_store(url, "--db")
    assert refused.value.field == "--db"
    assert "uri=true" in str(refused.value) and "give the file's path (sqlite:///s.db)" in str(refused.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "before"),
    [
        ("sqlite+pysqlite:///{}", "gpuwarden-journal"),
        ("sqlite:///{}?timeout=5", "s.db?timeout=5.journal"),
    ],
    ids=["driver", "query"],
)
def test_alerts_an_earlier_release_journaled_elsewhere_for_the_store_are_named_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, url: str, before: str
) -> None:
    """Releases before 0ce92c9 kept these URLs' journal under the working directory (a driver) or named after
    the query: alerts acknowledged there and not applied when that serve stopped were silently left behind
    (a new journal beside the store), only the changelog said so; serve names them, and how to apply them."""
    monkeypatch.chdir(tmp_path)
    db = url.format(tmp_path / "s.db")
    engine, _, _, _ = build_service(GpuwardenConfig(), db)
    sql = engine.store.engine
    old = AcceptJournal(tmp_path / before, lambda journal_id: applied_offset(sql, journal_id))
    held = old.append(KIND_POSTABLE, b'[{"labels": {"alertname": "A"}}]', 1)
    old.close()
    with caplog.at_level(logging.INFO, logger="gpuwarden.serve"):
        build_applier(GpuwardenConfig(), db, engine).journal.close()
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == [
        f"journal: {tmp_path / before} holds {held} bytes acknowledged but not applied, kept there for this"
        " store by a release before 0ce92c9; start serve once with alerting.journal_dir set to"
        f" {tmp_path / before} to apply them, then remove that directory"
    ]


@pytest.mark.parametrize("damage", ["unreadable", "not text"])
def test_an_earlier_releases_journal_that_cannot_be_read_is_named_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    """An earlier release's journal for this store that serve cannot read (kept by another user, 0700; an id
    that is not text) may hold alerts acknowledged and not applied: it was taken for no journal, said nothing
    and left them behind, or (not text) stopped serve's start with a traceback, for a directory serve does
    not use."""
    monkeypatch.chdir(tmp_path)
    db = f"sqlite+pysqlite:///{tmp_path / 's.db'}"
    engine, _, _, _ = build_service(GpuwardenConfig(), db)
    sql = engine.store.engine
    before = tmp_path / "gpuwarden-journal"
    old = AcceptJournal(before, lambda journal_id: applied_offset(sql, journal_id))
    old.append(KIND_POSTABLE, b'[{"labels": {"alertname": "A"}}]', 1)
    old.close()
    if damage == "not text":
        (before / "journal-id").write_bytes(b"\xff\xfe\x00journal")
    else:
        read_text = Path.read_text

        def refused(path: Path, *args: Any, **kwargs: Any) -> str:
            if path == before / "journal-id":
                raise PermissionError(13, "Permission denied", str(path))
            return read_text(path, *args, **kwargs)

        monkeypatch.setattr(Path, "read_text", refused)
    with caplog.at_level(logging.INFO, logger="gpuwarden.serve"):
        build_applier(GpuwardenConfig(), db, engine).journal.close()
    [said] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said.startswith(f"journal: cannot read {before}, where releases before 0ce92c9 kept this store's")
    assert f"alerting.journal_dir set to {before}" in said


def test_a_working_directory_journal_of_another_store_is_not_named_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``./gpuwarden-journal`` is also where a PostgreSQL store's journal is by default: one this store never
    applied from is not its own, and applying it here would store another store's alerts."""
    monkeypatch.chdir(tmp_path)
    other = AcceptJournal(tmp_path / "gpuwarden-journal", lambda _jid: 0)
    other.append(KIND_POSTABLE, b'[{"labels": {"alertname": "A"}}]', 1)
    other.close()
    db = f"sqlite+pysqlite:///{tmp_path / 's.db'}"
    engine, _, _, _ = build_service(GpuwardenConfig(), db)
    with caplog.at_level(logging.INFO, logger="gpuwarden.serve"):
        build_applier(GpuwardenConfig(), db, engine).journal.close()
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == []


def test_a_journal_left_beside_a_symlink_to_the_store_is_named_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Alerts an earlier version acknowledged through the link wait there: serve says how to apply them."""
    (tmp_path / "alias.db").symlink_to(tmp_path / "incidents.db")
    (tmp_path / "alias.db.journal").mkdir()
    engine, _, _, _ = build_service(GpuwardenConfig(), str(tmp_path / "alias.db"))
    with caplog.at_level(logging.INFO, logger="gpuwarden.serve"):
        build_applier(GpuwardenConfig(), str(tmp_path / "alias.db"), engine).journal.close()
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == [
        f"journal: {tmp_path / 'alias.db.journal'} is beside the link {tmp_path / 'alias.db'}; a store's"
        " journal is now beside the file it points to. If serve was stopped with alerts acknowledged but not"
        f" applied, start it once with alerting.journal_dir set to {tmp_path / 'alias.db.journal'} to apply"
        " them, then remove that directory"
    ]


def test_serve_through_a_symlink_is_refused_while_a_server_holds_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    (tmp_path / "alias.db").symlink_to(tmp_path / "incidents.db")
    held = take_locks(GpuwardenConfig(), str(tmp_path / "incidents.db"), standby=False)
    with socket.socket() as taken:  # had the locks let it through, it stops at the port, not serving on
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = runner.invoke(
            app, ["serve", "--log-format", "text", "--db", str(tmp_path / "alias.db"), "--port", port]
        )
    held.release()
    output = " ".join(result.output.split())
    assert result.exit_code == 75 and "is in use by another gpuwarden serve" in output, output


def test_a_postgres_store_without_journal_dir_journals_under_the_working_directory_warned_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    db = "postgresql+psycopg://gw@db/gw"
    engine, _, _, _ = build_service(GpuwardenConfig(), str(tmp_path / "s.db"))  # the store behind the URL
    with caplog.at_level(logging.INFO, logger="gpuwarden.serve"):
        applier = build_applier(GpuwardenConfig(), db, engine)
        applier.journal.close()
    assert applier.status()["quarantine_dir"] == str(tmp_path / "gpuwarden-journal" / "quarantine")
    (record,) = [r for r in caplog.records if r.name == "gpuwarden.serve"]
    assert record.getMessage() == f"journal: {tmp_path / 'gpuwarden-journal'}"
    # The warning is serve's start-up check (said before any file is made, as config validate says it).
    _, warnings = check_serve(GpuwardenConfig(), db, "api.db", "127.0.0.1", "api.listen_address")
    (warning,) = [w for w in warnings if w.field == "alerting.journal_dir"]
    assert "gpuwarden-journal under serve's working directory" in warning.message
    assert "set alerting.journal_dir" in warning.message


def test_a_journal_directory_that_comes_from_db_is_blamed_on_db_not_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve --db /proc/x/y.db`` said ``<environment>: alerting.journal_dir``: no variable set it, and
    the journal's place was derived from ``--db`` (beside the SQLite file)."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t0ken")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app, ["serve", "--log-format", "text", "--db", "/proc/x/y.db", "--port", str(free_port())]
    )
    said = " ".join(result.output.split())
    assert result.exit_code == 78, said
    assert (
        "error: --db '/proc/x/y.db': /proc/x/y.db.journal: cannot use it: cannot make anything in /proc"
        in said
    )
    assert "<environment>" not in said and "alerting.journal_dir" not in said


@pytest.mark.parametrize("given", ["--db", "api.db"])
def test_a_journal_directory_unusable_when_locked_names_where_the_store_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    """The directory was fine when checked, then was not (a standby waits hours): the lock-time error
    blames the option or setting that named the store, beside which the journal goes, as the check does."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    monkeypatch.setattr("gpuwarden.cli.preflight.check_journal_dir", lambda *_args: None)
    (tmp_path / "x.db.journal").write_text("not a directory")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"api": {"db": str(tmp_path / "x.db")}} if given == "api.db" else {}))
    options = ["--db", str(tmp_path / "x.db")] if given == "--db" else []
    result = runner.invoke(app, ["serve", "--log-format", "text", *options, "--config", str(config)])
    output = " ".join(result.output.split())
    assert result.exit_code == 78 and "Traceback" not in output, output
    named = f"--db '{tmp_path / 'x.db'}'" if given == "--db" else "api.db"
    assert f"{named}: " in output and "cannot use it" in output and "alerting.journal_dir" not in output
    assert (str(config) in output) == (given == "api.db")
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("incidents.db", "{tmp}/incidents.db (--db)"),
        ("postgresql+psycopg://gw:secret@db:5432/gw", "postgresql+psycopg://gw:***@db:5432/gw (--db)"),
        (
            "postgresql+psycopg://gw@db/gw?password=secret",
            "postgresql+psycopg://gw@db/gw?password=*** (--db)",
        ),
        (None, "{tmp}/gpuwarden.db (api.db)"),
    ],
    ids=[
        "sqlite-relative",
        "postgres-password-hidden",
        "postgres-password-in-the-query-hidden",
        "default-in-the-working-directory",
    ],
)
def test_serve_says_at_start_which_store_it_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str | None, shown: str
) -> None:
    """Without --db serve made gpuwarden.db in whatever directory it started in and said nothing of it (only
    of the journal beside it): an operator found incidents missing after starting it from another one."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    with socket.socket() as taken:  # it stops at the port: the store line comes before anything is opened
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = runner.invoke(app, ["serve", "--port", port, *(["--db", given] if given else [])])
    assert result.exit_code in (69, 75), result.output  # the store's host unknown (69), else the port (75)
    messages = [json.loads(line)["msg"] for line in result.stderr.splitlines() if line.startswith("{")]
    assert f"store: {shown.format(tmp=tmp_path)}" in messages, result.stderr


@pytest.mark.parametrize(
    ("db", "warned"),
    [
        ("postgresql+psycopg://u:pw-secret@127.0.0.1:1/x", True),
        ("postgresql+psycopg://u@127.0.0.1:1/x?password=pw-secret", True),
        ("postgresql+psycopg://u@127.0.0.1:1/x", False),
    ],
    ids=["before-the-host", "in-the-query", "none"],
)
def test_serve_warns_that_a_password_given_with_db_is_in_the_process_list(
    monkeypatch: pytest.MonkeyPatch, db: str, warned: bool
) -> None:
    """Any user of the machine reads a process's arguments (``ps``, ``/proc/<pid>/cmdline``): a password
    in ``--db`` is theirs for as long as serve runs, though serve hides it in every line it writes."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    result = runner.invoke(app, ["serve", "--log-format", "text", "--db", db])
    output = " ".join(result.output.split())
    said = "--db holds a password, which every user of this machine can read in the process list"
    assert (said in output) is warned and ("GPUWARDEN_API__DB" in output) is warned, output
    assert "pw-secret" not in output


@pytest.mark.parametrize("name", ["link.db", "incidents.db"], ids=["the-link", "the-first-name"])
def test_a_store_file_with_a_second_name_is_refused_by_validate_and_serve_before_any_file_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A hard link is another name of the store's file, with a store lock, a journal and a SQLite WAL of its
    own: a second serve given it started beside the one holding the first name, on the same store."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    store = tmp_path / "incidents.db"
    held = take_locks(GpuwardenConfig(), str(store), standby=False)
    store.write_bytes(b"")  # what SQLite makes a new store from
    os.link(store, tmp_path / "link.db")
    before = sorted(tmp_path.iterdir())
    config = tmp_path / "c.yaml"
    config.write_text(f"api:\n  db: {tmp_path / name}\n")
    with socket.socket() as taken:  # had the check let it through, it stops at the port, not serving on
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        results = [
            runner.invoke(app, ["config", "validate", str(config)]),
            runner.invoke(app, ["serve", "--log-format", "text", "--config", str(config), "--port", port]),
        ]
    held.release()
    for result, status in zip(results, (1, 78), strict=True):  # config validate's, serve's
        said = " ".join(result.stderr.split())
        assert result.exit_code == status, result.output
        assert f"{tmp_path / name} is one of 2 names (hard links) of the store's file" in said, said
        assert f"find / -xdev -samefile {tmp_path / name} lists them" in said, said
    assert sorted(tmp_path.iterdir()) == sorted([*before, config])
