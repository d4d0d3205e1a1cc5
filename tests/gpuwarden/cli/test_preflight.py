"""What ``config validate`` and ``serve`` check beyond the configuration model (gpuwarden.cli.preflight):
here, configured maintenance windows against the time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gpuwarden.cli import app
from gpuwarden.clock import SystemClock
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.gpuwarden.startable import startable

runner = BuiltCliRunner()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(text)
    return path


def _window(starts_at: datetime, ends_at: datetime) -> str:
    return (
        "alerting:\n  maintenance_windows:\n    - matchers: [rack=r07]\n"
        f"      starts_at: {starts_at.isoformat()}\n      ends_at: {ends_at.isoformat()}\n"
    )


YEAR = timedelta(days=366)  # MAX_WINDOW_SECONDS: how far ahead a setting may look


@pytest.mark.parametrize(
    "times",
    [
        lambda now: (now + timedelta(days=1), datetime(9999, 12, 31, tzinfo=UTC)),
        lambda now: (now + YEAR + timedelta(days=1), now + YEAR + timedelta(days=2)),
        lambda now: (now - timedelta(days=400), now + YEAR + timedelta(days=1)),
    ],
    ids=["year-9999", "starts-over-a-year-ahead", "ends-over-a-year-ahead"],
)
def test_a_maintenance_window_ending_more_than_a_year_ahead_is_refused_naming_ends_at(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    times: Callable[[datetime], tuple[datetime, datetime]],
) -> None:
    path = write(tmp_path, _window(*times(datetime.now(UTC).replace(microsecond=0))))
    result = runner.invoke(app, ["config", "validate", str(path)])
    output = " ".join(result.output.split())
    assert result.exit_code == 1, output
    assert f"{path}:5: alerting.maintenance_windows[0].ends_at:" in output
    assert "more than 366 days from now" in output and "give the work's end" in output
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    served = runner.invoke(
        app, ["serve", "--log-format", "text", "--db", str(tmp_path / "x.db"), "--config", str(path)]
    )
    assert served.exit_code == 78 and "alerting.maintenance_windows[0].ends_at" in served.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpuwarden.yaml"]  # no store, lock or journal


def test_a_maintenance_window_that_already_ended_is_warned_of_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = _window(datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, 2, tzinfo=UTC))
    path = write(tmp_path, startable(monkeypatch, window))
    result = runner.invoke(app, ["config", "validate", str(path)])
    output = " ".join(result.output.split())
    assert result.exit_code == 0, output
    assert (
        f"warning: {path}:5: alerting.maintenance_windows[0].ends_at: the window ended at"
        " 2020-01-01T02:00:00Z, so it mutes nothing" in output
    )
    assert f"{path}: ok" in output


def test_a_maintenance_window_ahead_within_a_year_passes_without_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    window = _window(now + timedelta(days=300), now + YEAR - timedelta(days=1))
    path = write(tmp_path, startable(monkeypatch, window))
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 0 and "warning" not in result.output, result.output


def test_config_validate_warns_of_a_detector_whose_queries_are_missing_and_not_of_the_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        "anomaly:\n  source: prometheus\n  detectors: [fleet, presence]\n  fleet_load_query: null\n"
        "  queries:\n    - {name: DCGM_FI_DEV_GPU_TEMP, expr: DCGM_FI_DEV_GPU_TEMP}\n",
    )
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")  # serve's, as it takes it
    result = runner.invoke(app, ["config", "validate", str(path)])
    output = " ".join(result.output.split())
    assert result.exit_code == 0, output
    assert (
        f"warning: {path}:5: anomaly.queries: detector 'fleet' reads queries named DCGM_FI_DEV_POWER_USAGE,"
        " DCGM_FI_DEV_SM_CLOCK, which are not configured" in output
    )
    assert "'presence'" not in output  # GPU_TEMP is one of its presence_queries
    for name in ("GPUWARDEN_API_TOKEN", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.setenv(name, f"secret-{name}")
    example = Path(__file__).resolve().parents[3] / "deploy" / "gpuwarden.example.yaml"
    monkeypatch.setenv("GPUWARDEN_API__DB", str(tmp_path / "incidents.db"))  # no /var/lib/gpuwarden here
    monkeypatch.setenv("GPUWARDEN_ANOMALY__STATE_FILE", str(tmp_path / "anomaly.state.npz"))
    result = runner.invoke(app, ["config", "validate", str(example)])
    assert result.exit_code == 0 and "warning" not in result.output, result.output


@pytest.mark.parametrize(
    ("text", "said"),
    [
        pytest.param(
            "api:\n  db: {tmp}/s.db\nalerting:\n  journal_dir: /proc/x\n",
            ":4: alerting.journal_dir: /proc/x: cannot use it: cannot make anything in /proc",
            id="journal-dir-in-proc",
        ),
        pytest.param(
            "api:\n  db: {tmp}/missing/s.db\n",
            ":2: api.db: {tmp}/missing/s.db: its directory {tmp}/missing does not exist",
            id="store-in-a-missing-directory",
        ),
        # serve could not make the store's lock file there and exited 78, after validate said ok: a store
        # in a read-only directory, or in another user's, with its journal kept elsewhere. /proc takes no
        # files, even from root.
        pytest.param(
            "api:\n  db: /proc/s.db\nalerting:\n  journal_dir: {tmp}/journal\n",
            ":2: api.db: /proc/s.db: cannot make files in its directory /proc: No such file or directory (the"
            " store's lock",
            id="store-in-a-directory-that-takes-no-files",
        ),
        # Paths no file can have ended config validate (and serve) in a traceback from the path checks
        # (OSError: File name too long; ValueError: embedded null byte), or passed (a NUL journal_dir).
        pytest.param(
            "api:\n  db: {tmp}/" + "x" * 300 + ".db\n",
            ":2: api.db: {tmp}/" + "x" * 300 + ".db: cannot use it: File name too long",
            id="store-name-too-long",
        ),
        pytest.param(
            'api:\n  db: "{tmp}/a\\0b.db"\n',
            ":2: api.db: '{tmp}/a\\x00b.db' holds a NUL character, which no path can; remove it",
            id="store-name-with-a-nul",
        ),
        pytest.param(
            'api:\n  db: {tmp}/s.db\nalerting:\n  journal_dir: "{tmp}/j\\0"\n',
            ":4: alerting.journal_dir: '{tmp}/j\\x00' holds a NUL character",
            id="journal-dir-with-a-nul",
        ),
        pytest.param(
            "api:\n  db: {tmp}/s.db\nalerting:\n  journal_dir: {tmp}/" + "j" * 300 + "\n",
            ":4: alerting.journal_dir: {tmp}/" + "j" * 300 + ": cannot use it: File name too long",
            id="journal-dir-name-too-long",
        ),
        pytest.param(
            "api:\n  db: {tmp}/s.db\nalerting:\n  kubernetes_inventory:\n    cluster: c\n"
            "    kubeconfig: {tmp}/" + "k" * 300 + "\n",
            ":6: alerting.kubernetes_inventory.kubeconfig: {tmp}/" + "k" * 300 + ": cannot use it: File name",
            id="kubeconfig-name-too-long",
        ),
        pytest.param(  # anomaly run refused it at its start, validate said ok
            "anomaly:\n  queries:\n    - {{name: up, expr: up}}\n  state_file: {tmp}/missing/a.npz\n",
            ":4: anomaly.state_file: '{tmp}/missing/a.npz': cannot write in {tmp}/missing: it does not exist",
            id="anomaly-state-file-in-a-missing-directory",
        ),
    ],
)
def test_config_validate_refuses_the_store_and_journal_places_serve_refuses(
    tmp_path: Path, text: str, said: str
) -> None:
    """``config validate`` said ok and ``serve`` then refused the same file (README: exit 0 means all three
    start with it)."""
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(text.format(tmp=tmp_path))
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1, result.output
    assert said.format(tmp=tmp_path) in " ".join(result.output.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpuwarden.yaml"]  # it made nothing


def test_a_store_in_a_directory_that_takes_no_files_is_one_problem_and_serve_refuses_it_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its journal beside it is no second problem; serve says the same line before it makes any file."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")  # serve's, as it takes it
    path = write(tmp_path, "api:\n  db: /proc/s.db\n")
    result = runner.invoke(app, ["config", "validate", str(path)])
    output = " ".join(result.output.split())
    assert result.exit_code == 1, output
    assert output.count("error:") == 1 and "journal" not in output, output
    said = f"{path}:2: api.db: /proc/s.db: cannot make files in its directory /proc"
    assert said in output
    served = runner.invoke(app, ["serve", "--log-format", "text", "--config", str(path)])
    assert served.exit_code == 78 and said in " ".join(served.output.split()), served.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpuwarden.yaml"]


def test_the_example_config_stays_valid_without_a_warning_next_year(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It shipped a maintenance window for rack r07 on 2026-12-01: a warning (the window ended) from the
    next day on, and a real mute of r07's alerts for anyone who deployed the example that night."""
    later = datetime.now(UTC) + timedelta(days=400)
    monkeypatch.setattr(SystemClock, "now", lambda self: later)
    for name in ("GPUWARDEN_API_TOKEN", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.setenv(name, f"secret-{name}")
    monkeypatch.setenv("GPUWARDEN_API__DB", str(tmp_path / "incidents.db"))
    monkeypatch.setenv("GPUWARDEN_ANOMALY__STATE_FILE", str(tmp_path / "anomaly.state.npz"))
    example = Path(__file__).resolve().parents[3] / "deploy" / "gpuwarden.example.yaml"
    result = runner.invoke(app, ["config", "validate", str(example)])
    assert result.exit_code == 0 and "warning" not in result.output, result.output


QUERIES = "anomaly:\n  queries:\n    - {name: gpuwarden_gpu_up, expr: gpuwarden_gpu_up}\n"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("exporter:\n  port: 9400\n", id="exporter-only"),
        pytest.param("api:\n  port: 8080\n  db: {db}\n", id="serve-only"),
    ],
)
def test_config_validate_warns_of_missing_queries_only_for_a_file_that_writes_anomaly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """A GPU node's exporter file (or serve's) has no queries and needs none, as anomaly run's refusal
    already knew: five paragraphs about detectors it does not configure buried what mattered."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    path = write(tmp_path, text.format(db=tmp_path / "s.db"))
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 0 and "warning" not in result.output, result.output


@pytest.mark.parametrize(
    ("text", "token", "said"),
    [
        pytest.param(
            QUERIES,
            None,
            "api.token: serve refuses to start without an API token: set api.token ({env: NAME}) or export"
            " GPUWARDEN_API_TOKEN",
            id="no-token",
        ),
        pytest.param(
            QUERIES,
            " t",
            "GPUWARDEN_API_TOKEN: begins or ends with a space or a newline, which no client sends; remove it;"
            " serve refuses to start with it",
            id="token-variable-serve-refuses",
        ),
        pytest.param(
            "anomaly:\n  prometheus_url: http://127.0.0.1:9090\n",
            "t",
            "anomaly.queries: anomaly run refuses to start: no query to score",
            id="no-queries-source-left-unset",
        ),
        pytest.param(
            QUERIES + "  source: in-process\n",
            "t",
            ":6: anomaly.source: anomaly run refuses in-process",
            id="in-process-written",
        ),
    ],
)
def test_config_validate_refuses_what_stops_serve_or_anomaly_run_naming_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, token: str | None, said: str
) -> None:
    """README: exit 0 means serve, exporter and anomaly run all start with the file."""
    monkeypatch.delenv("GPUWARDEN_API_TOKEN", raising=False)
    if token is not None:
        monkeypatch.setenv("GPUWARDEN_API_TOKEN", token)
    path = write(tmp_path, f"api:\n  db: {tmp_path}/s.db\n" + text)
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1, result.output
    assert said in " ".join(result.output.split())


def test_config_validate_takes_the_token_from_the_environment_as_serve_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    path = write(tmp_path, f"api:\n  db: {tmp_path}/s.db\n" + QUERIES)
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 0, result.output
    # the default source reads the queries from Prometheus, so a detector's missing queries are warned of
    assert "detector 'thermal' reads queries named DCGM_FI_DEV_GPU_TEMP" in " ".join(result.output.split())


def test_anomaly_run_refuses_in_process_naming_the_setting(tmp_path: Path) -> None:
    path = write(tmp_path, QUERIES + "  source: in-process\n")
    result = runner.invoke(app, ["anomaly", "run", "--config", str(path), "--ticks", "1"])
    assert result.exit_code == 78
    assert f"{path}:4: anomaly.source: anomaly run refuses in-process" in " ".join(result.output.split())


def test_config_validate_warns_when_signatures_lacks_the_throttle_reasons_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without it a thermal slowdown was no GpuClockSlowdown (P2 throttling) but an unknown P3 anomaly."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    queries = "".join(
        f"    - {{name: {name}, expr: {name}}}\n" for name in ("gpuwarden_gpu_up", "DCGM_FI_DEV_XID_ERRORS")
    )
    path = write(tmp_path, f"anomaly:\n  detectors: [signatures]\n  queries:\n{queries}")
    result = runner.invoke(app, ["config", "validate", str(path)])
    output = " ".join(result.output.split())
    assert result.exit_code == 0, output
    assert (
        "anomaly.queries: detector 'signatures' reads queries named DCGM_FI_DEV_CLOCK_THROTTLE_REASONS,"
        in output
    )


def test_config_validate_warns_of_each_signature_rule_the_queries_leave_unable_to_fire(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The soak: with the example's queries a downed NVLink surfaced minutes later as a generic P3 power
    anomaly and a hung GPU only as power and clock deviations, and `config validate` said ok."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    old_example = (
        "gpuwarden_gpu_up",
        "DCGM_FI_DEV_XID_ERRORS",
        "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "DCGM_FI_DEV_GPU_UTIL",
    )
    queries = "".join(f"    - {{name: {name}, expr: {name}}}\n" for name in old_example)
    path = write(tmp_path, f"anomaly:\n  detectors: [signatures]\n  queries:\n{queries}")
    result = runner.invoke(app, ["config", "validate", str(path)])
    output = " ".join(result.output.split())
    assert result.exit_code == 0, output
    missing = (
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL, DCGM_FI_DEV_ROW_REMAP_PENDING|DCGM_FI_DEV_RETIRED_PENDING,"
        " DCGM_FI_DEV_ROW_REMAP_FAILURE, gpuwarden_gpu_recovery_action, gpuwarden_exporter_stale,"
        " DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL, DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL,"
        " DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL, DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL,"
        " DCGM_FI_DEV_NVLINK_LINK_STATUS, DCGM_FI_PROF_SM_ACTIVE, which are not configured"
    )
    assert f"anomaly.queries: detector 'signatures' reads queries named {missing}" in output


def test_a_file_for_the_exporter_alone_needs_no_api_token_nor_queries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A GPU node's exporter has no GPUWARDEN_API_TOKEN and scores nothing: its file must validate there.
    monkeypatch.delenv("GPUWARDEN_API_TOKEN", raising=False)
    path = write(tmp_path, "exporter:\n  port: 9401\ntracing:\n  enabled: false\n")
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 0, result.output


def test_serve_lists_every_problem_of_its_start_up_check_and_makes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As ``config validate`` (and promtool, ``alertmanager --config.check``) do: one start-up, every
    problem, not the first one per attempt."""
    ends = datetime(9999, 12, 31, tzinfo=UTC)
    path = write(
        tmp_path,
        _window(datetime.now(UTC) + timedelta(days=1), ends)
        + f"  journal_dir: /proc/x\n  inventory_file: {tmp_path / 'missing.yaml'}\n"
        "api:\n  listen_address: 203.0.113.7\n",
    )
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    served = runner.invoke(
        app, ["serve", "--log-format", "text", "--db", str(tmp_path / "x.db"), "--config", str(path)]
    )
    output = " ".join(served.output.split())
    assert served.exit_code == 78, output
    for said in (
        f"{path}:5: alerting.maintenance_windows[0].ends_at:",
        f"{path}:6: alerting.journal_dir: /proc/x: cannot use it",
        "alerting.inventory_file",
        f"{path}:9: api.listen_address: cannot listen on '203.0.113.7'",
    ):
        assert said in output, said
    assert output.count("error:") == 4, output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpuwarden.yaml"]  # no store, lock or journal


def test_serve_without_a_token_lists_the_missing_token_with_the_file_s_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "alerting:\n  journal_dir: /proc/x\n")
    monkeypatch.delenv("GPUWARDEN_API_TOKEN", raising=False)
    served = runner.invoke(
        app, ["serve", "--log-format", "text", "--db", str(tmp_path / "x.db"), "--config", str(path)]
    )
    output = " ".join(served.output.split())
    assert served.exit_code == 78, output
    assert "api.token: serve refuses to start without an API token: set api.token" in output
    assert f"{path}:2: alerting.journal_dir: /proc/x: cannot use it" in output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpuwarden.yaml"]


@pytest.mark.parametrize("token", [None, ""], ids=["unset", "empty"])
def test_an_alert_url_without_a_token_says_whether_the_variable_is_unset_or_empty(
    token: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An exported but empty GPUWARDEN_API_TOKEN was told "it is set but GPUWARDEN_API_TOKEN is not".
    path = write(
        tmp_path,
        "anomaly:\n  prometheus_url: http://127.0.0.1:1\n  alert_url: http://127.0.0.1:1\n"
        "  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP}\n",
    )
    monkeypatch.delenv("GPUWARDEN_API_TOKEN", raising=False)
    if token is not None:
        monkeypatch.setenv("GPUWARDEN_API_TOKEN", token)
    state = "not set" if token is None else "empty"
    expected = (
        f"anomaly.alert_url: anomaly run refuses to start: it is set but GPUWARDEN_API_TOKEN is {state};"
        " export the token `gpuwarden serve` takes (it refuses alerts without it)"
    )
    for argv in (
        ["anomaly", "run", "--config", str(path), "--ticks", "1"],
        ["config", "validate", str(path)],
    ):
        result = runner.invoke(app, argv)
        assert result.exit_code == (1 if argv[0] == "config" else 78), result.output  # validate: 1
        assert expected in " ".join(result.output.split()), result.output


@pytest.mark.parametrize(
    ("db", "refused"),
    [
        ("postgresql+psycopg://gw:p@ss@db/gw", True),
        ("postgresql+psycopg://gw:p@s@s@[::1]:5432/gw", True),
        ("postgresql+psycopg://gw:p%40ss@db/gw", False),  # the fix the refusal names
        (
            "postgresql+psycopg://gw@tenant:pw@db/gw",
            False,
        ),  # an @ in the user (Azure's user@server): read right
        ("postgresql+psycopg://gw:pa/ss@db:5432/gw", False),
        ("postgresql+psycopg://gw:pw@[::1]:5432/gw", False),
        ("postgresql+psycopg://gw@db/gw?password=p@ss", False),  # in the query: psycopg gets it whole
        ("/var/lib/gpuwarden/a:b@c@d.db", False),  # a SQLite file
    ],
    ids=["at", "ats-ipv6", "escaped", "at-in-the-user", "slash", "ipv6", "query", "sqlite-path"],
)
def test_config_validate_refuses_a_store_url_whose_password_holds_an_unescaped_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: str, refused: bool
) -> None:
    """SQLAlchemy took what follows the password's first @ for the host, and psycopg's error named it
    (``failed to resolve host 'ss@db'``): serve and config validate now refuse it, naming the fix."""
    monkeypatch.setenv("DB", db)
    path = tmp_path / "c.yaml"
    path.write_text("api:\n  db: {env: DB}\n")
    said = " ".join(runner.invoke(app, ["config", "validate", str(path)]).output.split())
    assert ("write each @ of the password as %40" in said) is refused, said
    assert "ss@db" not in said and "s@[" not in said, said  # the password's end, quoted as a host


def test_a_kubeconfig_only_serve_has_stops_serve_and_validate_but_no_command_that_reads_no_inventory(
    tmp_path: Path,
) -> None:
    """One file serves every command; the kubeconfig is mounted in serve's pod only. The model refused it
    where it was not a file, so anomaly score (and run, the exporter, inference-server) refused the shared
    file for a setting none of them reads."""
    path = write(
        tmp_path,
        "anomaly:\n  thresholds:\n    k: 6\nalerting:\n  kubernetes_inventory:\n    cluster: k1\n"
        f"    kubeconfig: {tmp_path}/serve-only/kubeconfig\n",
    )
    series = tmp_path / "in.csv"
    series.write_text("timestamp,value\n" + "".join(f"{60 * i},{i % 3}\n" for i in range(50)))
    scored = runner.invoke(
        app, ["anomaly", "score", "--input", str(series), "--output", "-", "--config", str(path), "-q"]
    )
    assert scored.exit_code == 0, scored.output
    said = (
        f"{path}:7: alerting.kubernetes_inventory.kubeconfig: {tmp_path}/serve-only/kubeconfig is not a file"
    )
    validated = runner.invoke(app, ["config", "validate", str(path)], env={"GPUWARDEN_API_TOKEN": "t"})
    served = runner.invoke(
        app, ["serve", "--log-format", "text", "--config", str(path), "--db", str(tmp_path / "s.db")]
    )
    for result, status in ((validated, 1), (served, 78)):
        assert result.exit_code == status and said in " ".join(result.stderr.split()), result.stderr
    assert not (tmp_path / "s.db").exists()
