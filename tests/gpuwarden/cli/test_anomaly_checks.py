"""What ``anomaly run`` warns of at its start (``gpuwarden.cli.anomaly_checks``), as ``config validate``
says it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gpuwarden.cli import app
from tests.gpuwarden.cli.built_runner import BuiltCliRunner

runner = BuiltCliRunner()

PRESENCE = (
    "anomaly:\n  source: prometheus\n  detectors: [presence]\n{absent}  queries:\n"
    "    - {{name: DCGM_FI_DEV_GPU_TEMP, expr: DCGM_FI_DEV_GPU_TEMP, step_seconds: {temp}}}\n"
    "    - {{name: DCGM_FI_DEV_FB_USED, expr: DCGM_FI_DEV_FB_USED, step_seconds: 600}}\n"
)


def _validate(tmp_path: Path, text: str) -> tuple[int, list[str]]:
    path = tmp_path / "presence.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["config", "validate", str(path)])
    return result.exit_code, [line for line in result.stderr.splitlines() if "absent_after_seconds" in line]


def test_a_presence_deadline_shorter_than_the_presence_step_is_warned_of_with_its_fix(tmp_path: Path) -> None:
    """The default 90 s deadline with presence queries read every 300 s: a read ending past 90 s on the
    step's grid found every GPU's newest sample older than 90 s, so every GPU still reporting read absent
    (the restart fuzz met it); ``config validate`` passed the file without a word."""
    code, lines = _validate(tmp_path, PRESENCE.format(absent="", temp=300))
    assert code == 0  # a warning: the file still starts anomaly run
    (line,) = lines
    assert "warning:" in line and "presence.yaml" in line and "anomaly.absent_after_seconds:" in line
    assert "90 s is shorter than step_seconds 300 of query DCGM_FI_DEV_GPU_TEMP" in line
    assert "set absent_after_seconds to 900 (at least 300;" in line


@pytest.mark.parametrize(
    ("absent", "temp"),
    [
        pytest.param("", 30, id="default-step"),
        pytest.param("  absent_after_seconds: 300\n", 300, id="deadline-of-a-step"),
        pytest.param("  detectors: [adaptive]\n", 300, id="no-presence-detector"),
    ],
)
def test_a_presence_deadline_the_steps_can_meet_is_not_warned_of(
    tmp_path: Path, absent: str, temp: int
) -> None:
    """The fastest presence query decides (a GPU is seen by any of them): a 600 s one beside it is no trap."""
    text = PRESENCE.format(absent=absent, temp=temp)
    if "detectors" in absent:
        text = text.replace("  detectors: [presence]\n", "")
    code, lines = _validate(tmp_path, text)
    assert code == 0 and lines == []


def test_the_fix_offered_for_a_long_presence_step_keeps_the_deadline_under_absent_forget_seconds(
    tmp_path: Path,
) -> None:
    """Presence read every 1800 s: three steps (5400 s) is past ``absent_forget_seconds`` (3600), and the
    detector forgets a GPU once it is that old, before it reads absent: following the fix as offered, a
    node really down still raised nothing. The fix says to raise ``absent_forget_seconds`` too."""
    text = PRESENCE.format(absent="", temp=1800).replace("step_seconds: 600", "step_seconds: 2400")
    code, lines = _validate(tmp_path, text)
    assert code == 0
    (line,) = lines
    assert "set absent_after_seconds to 5400 (at least 1800;" in line
    assert "and absent_forget_seconds above it (now 3600" in line


@pytest.mark.parametrize(
    "absent",
    [
        pytest.param("  absent_after_seconds: 3600\n", id="deadline-at-the-forget-age"),
        pytest.param("  absent_after_seconds: 7200\n", id="deadline-past-the-forget-age"),
    ],
)
def test_a_presence_deadline_at_or_past_absent_forget_seconds_is_warned_of(
    tmp_path: Path, absent: str
) -> None:
    """The detector forgets a GPU older than ``absent_forget_seconds`` before it asks whether it is older
    than ``absent_after_seconds``: with the deadline there or past it, a GPU is forgotten the tick it would
    have read absent, and a node really down never raised an alert. ``config validate`` passed it silently."""
    code, lines = _validate(tmp_path, PRESENCE.format(absent=absent, temp=30))
    assert code == 0
    (line,) = lines
    assert "warning:" in line and "anomaly.absent_after_seconds:" in line
    assert "is not shorter than absent_forget_seconds 3600" in line
    assert "raise absent_forget_seconds above it" in line


def test_a_presence_deadline_under_a_raised_forget_age_is_not_warned_of(tmp_path: Path) -> None:
    text = PRESENCE.format(absent="  absent_after_seconds: 7200\n  absent_forget_seconds: 14400\n", temp=30)
    code, lines = _validate(tmp_path, text)
    assert code == 0 and lines == []


def test_the_forget_age_offered_for_a_year_long_deadline_is_one_the_configuration_takes(
    tmp_path: Path,
) -> None:
    """``absent_forget_seconds`` is bounded by a year (MAX_WINDOW_SECONDS, 366 days). A deadline of 300 days
    was told to raise the forget age to 600 days, which ``config validate`` then refuses; the fix offered
    stays within the bound, and a deadline at the bound is told to come down instead."""
    text = PRESENCE.format(
        absent="  absent_after_seconds: 25920000\n  absent_forget_seconds: 3600\n", temp=30
    )
    code, lines = _validate(tmp_path, text)
    assert code == 0
    (line,) = lines
    assert "(to 31622400, say)" in line
    text = PRESENCE.format(
        absent="  absent_after_seconds: 31622400\n  absent_forget_seconds: 31622400\n", temp=30
    )
    code, lines = _validate(tmp_path, text)
    assert code == 0
    (line,) = lines
    assert "raise absent_forget_seconds" not in line
    assert "lower absent_after_seconds under 31622400" in line


@pytest.mark.parametrize(
    ("detectors", "field", "words"),
    [
        pytest.param(
            "[]",
            "anomaly.detectors",
            "[] names no detector, so anomaly run would score nothing and raise no alert; list those to run"
            " (adaptive, level_shift, multivariate, fleet, signatures, thermal, presence)",
            id="empty",
        ),
        pytest.param(
            "[adaptive, adaptive]",
            "anomaly.detectors[1]",
            "'adaptive' is also anomaly.detectors[0]; list each once (each entry runs a detector: it would"
            " run twice)",
            id="repeated",
        ),
    ],
)
def test_a_detector_list_naming_none_or_one_twice_is_refused_at_its_line_by_validate_and_anomaly_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, detectors: str, field: str, words: str
) -> None:
    """Both passed: ``[]`` read every query at each tick and scored nothing without a word; a name given twice
    ran that detector twice on every series."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    path = tmp_path / "detectors.yaml"
    path.write_text(
        "anomaly:\n  prometheus_url: http://127.0.0.1:1\n  queries:\n    - {name: up, expr: up}\n"
        f"  detectors: {detectors}\n"
    )
    expected = f"error: {path}:5: {field}: {words}"
    validated = runner.invoke(app, ["config", "validate", str(path)])
    ran = runner.invoke(app, ["anomaly", "run", "--config", str(path), "--ticks", "1"])
    for result, status in ((validated, 1), (ran, 78)):
        assert result.exit_code == status, result.output
        assert expected in " ".join(result.stderr.split()), result.stderr


ALERT_URL = "anomaly:\n  alert_url: {url}\n  queries:\n    - {{name: DCGM_FI_DEV_GPU_TEMP, expr: up}}\n"


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://gw.example:8080", True),
        ("http://10.0.0.7:8080", True),
        ("https://gw.example", False),
        ("http://localhost:8080", False),
        ("http://127.0.0.1:8080", False),
        ("http://[::1]:8080", False),
    ],
    ids=["plain-http-host", "plain-http-address", "https", "localhost", "loopback-v4", "loopback-v6"],
)
def test_an_alert_url_sending_the_api_token_over_plain_http_to_another_machine_is_warned_of(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, warned: bool
) -> None:
    """Slack's and the webhooks' tokens over plain http were warned of; the API token that anomaly run sends
    serve with each alert (one that writes to serve) was not."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "s3cret-token-of-serve-0123456789")
    path = tmp_path / "anomaly.yaml"
    path.write_text(ALERT_URL.format(url=url))
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "plain http" in line]
    if not warned:
        assert lines == [], lines
        return
    (line,) = lines
    host = urlsplit(url).hostname
    assert f"warning: {path}:2: anomaly.alert_url: the API token (GPUWARDEN_API_TOKEN) goes to {host}" in line
    assert "use an https URL" in line and "localhost" in line
