"""``anomaly run`` as a process: what it logs every tick, when ticks are skipped, on SIGHUP, and that SIGTERM
saves its state."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
from apscheduler.events import (
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    JobExecutionEvent,
    JobSubmissionEvent,
)

from anomaly.scheduler import AnomalyScheduler
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.fakes import TableCollector
from tests.integration.servers import READY_SECONDS, free_port, sigterm_once, wait_http_ok


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes]) -> str:
    """The log once it holds ``text``; fails if the process ends first (or after READY_SECONDS, a hang)."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        log = path.read_text()
        if text in log:
            return log
        assert proc.poll() is None, log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never logged: {path.read_text()}")


def test_run_logs_no_scheduler_lines_per_tick_and_says_on_sighup_that_reload_needs_a_restart(tmp_path):
    port = free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "anomaly:\n  prometheus_url: http://127.0.0.1:1\n  query_timeout_seconds: 1\n"
        "  infer_every_seconds: 0.2\n  queries:\n    - {name: up, expr: up, step_seconds: 0.2}\n"
    )
    log = tmp_path / "log"
    state = tmp_path / "anomaly.state.npz"
    cli = [sys.executable, "-c", "from gpuwarden.cli import main; main()"]
    argv = [*cli, "anomaly", "run", "--config", str(cfg), "--port", str(port), "--state-file", str(state)]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_http_ok(f"http://127.0.0.1:{port}/metrics", proc)
            _wait_for(log, "tick: queries read", proc)
            proc.send_signal(signal.SIGHUP)
            _wait_for(log, "config reload is not supported; restart", proc)
            assert proc.poll() is None  # still running
            assert not state.exists()  # saved every state_save_seconds (300 s), and at a stop
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert "Running job" not in text and "executed successfully" not in text, text
    assert f"anomaly state saved to {state}" in text and state.stat().st_mode & 0o777 == 0o600


def test_a_stop_signal_is_said_at_once_before_the_state_is_saved(tmp_path):
    """Ctrl-C or SIGTERM after the warm-up was said by no line: the log went on silent until the state was
    saved, after the tick in progress (a read of a slow Prometheus), as if the run had not heard it."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "anomaly:\n  prometheus_url: http://127.0.0.1:1\n  query_timeout_seconds: 1\n"
        "  infer_every_seconds: 0.2\n  queries:\n    - {name: up, expr: up, step_seconds: 0.2}\n"
    )
    log = tmp_path / "log"
    state = tmp_path / "anomaly.state.npz"
    cli = [sys.executable, "-c", "from gpuwarden.cli import main; main()"]
    argv = [*cli, "anomaly", "run", "--config", str(cfg), "--port", "0", "--state-file", str(state)]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_for(log, "tick: queries read", proc)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    said = f"SIGINT: stopping; a tick in progress ends first, then the state is saved to {state}"
    assert said in text and text.index(said) < text.index(f"anomaly state saved to {state}"), text


def test_skipped_ticks_are_one_warning_when_skipping_starts_and_one_when_ticks_resume(caplog):
    clock = FakeClock()
    service = AnomalyService(AnomalyConfig(), [CollectorSource([TableCollector()], clock)], clock)
    scheduler = AnomalyScheduler(service)
    apscheduler_log = logging.getLogger("apscheduler.scheduler")
    now = datetime.now(UTC)
    with caplog.at_level(logging.INFO):
        for _ in range(5):  # what APScheduler does for each run it skips: a warning, and the event
            apscheduler_log.warning(
                'Execution of job "%s" skipped: maximum number of running instances reached (%d)', "infer", 1
            )
            scheduler._on_event(JobSubmissionEvent(EVENT_JOB_MAX_INSTANCES, "infer", None, [now]))
        scheduler._on_event(JobExecutionEvent(EVENT_JOB_EXECUTED, "infer", None, now))
        scheduler._on_event(JobExecutionEvent(EVENT_JOB_EXECUTED, "infer", None, now))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "anomaly tick skipped: the previous tick is still running" in lines[0]
    assert lines[1] == "anomaly ticks resumed after 5 skipped"
    assert scheduler.skipped == 5


def _skip_warning_while(
    scheduler: AnomalyScheduler,
    job: Callable[[], None],
    entered: threading.Event,
    release: threading.Event,
    caplog: pytest.LogCaptureFixture,
) -> str:
    """``scheduler``'s warning for a tick due while its ``job`` runs (the job sets ``entered``, then waits for
    ``release``)."""
    running = threading.Thread(target=job)
    running.start()
    try:
        assert entered.wait(10)
        with caplog.at_level(logging.WARNING, logger="anomaly.scheduler"):
            scheduler._on_event(
                JobSubmissionEvent(EVENT_JOB_MAX_INSTANCES, "infer", None, [datetime.now(UTC)])
            )
    finally:
        release.set()
        running.join(10)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "anomaly.scheduler"]
    return line


def test_ticks_skipped_behind_a_slow_alert_post_are_said_to_wait_for_the_receiver_not_a_read(caplog):
    # The post to serve runs in the tick (after_infer): a receiver that accepts and never answers held each
    # tick its 10 s, and the warning sent the operator to Prometheus ("a slow read?").
    clock, entered, release = FakeClock(), threading.Event(), threading.Event()

    def slow_post() -> None:
        entered.set()
        release.wait(10)

    service = AnomalyService(AnomalyConfig(), [CollectorSource([TableCollector()], clock)], clock)
    scheduler = AnomalyScheduler(service, after_infer=slow_post)
    line = _skip_warning_while(scheduler, scheduler.infer_job, entered, release, caplog)
    assert line.startswith("anomaly tick skipped: the previous tick is still posting its alerts"), line


def test_ticks_skipped_behind_a_slow_refit_are_said_to_wait_for_the_refit_not_a_read(caplog):
    # The refit holds the loop's lock: the tick due meanwhile waits, those after are skipped, and the warning
    # sent the operator to Prometheus ("a slow read?") while the fit was what ran long.
    clock, entered, release = FakeClock(), threading.Event(), threading.Event()

    class SlowFit(AnomalyService):
        def fit(self) -> None:
            entered.set()
            release.wait(10)

    service = SlowFit(AnomalyConfig(), [CollectorSource([TableCollector()], clock)], clock)
    scheduler = AnomalyScheduler(service)
    line = _skip_warning_while(scheduler, scheduler.fit_job, entered, release, caplog)
    assert line.startswith("anomaly tick skipped: the models' refit (fit_every_seconds) is still running"), (
        line
    )


def _stopped_while_its_first_request_hangs(
    tmp_path: Path,
    config: Callable[[int], str],
    state: Path,
    before_stop: Callable[[subprocess.Popen[bytes], Path], None] = lambda proc, log: None,
    env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """``anomaly run`` with ``config(port)``, ``port`` a server that takes its first request and never
    answers: once that request is taken, ``before_stop(process, log)`` and SIGTERM. Its exit code and log."""
    silent = socket.create_server(("127.0.0.1", 0))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config(silent.getsockname()[1]))
    log = tmp_path / "log"
    cli = [sys.executable, "-c", "from gpuwarden.cli import main; main()"]
    argv = [*cli, "anomaly", "run", "--config", str(cfg), "--port", "0", "--state-file", str(state)]
    with silent, ExitStack() as held:

        def first_request_taken(proc: subprocess.Popen[bytes]) -> None:
            silent.settimeout(READY_SECONDS)
            held.enter_context(silent.accept()[0])  # the warm-up's first request; held until it exits
            before_stop(proc, log)

        code = sigterm_once(argv, log, first_request_taken, env=env, wait_seconds=20)
    return code, log.read_text()


def test_sigterm_during_the_warm_up_stops_with_a_line_exit_0_and_the_state_file_as_it_was(tmp_path):
    """A pod stop during the warm-up (tens of seconds of history reads on a large fleet) was SIGTERM's
    default action: exit 143, no line said, nothing closed. It ends the run as a stop after the warm-up
    does: exit 0, said, and the state file left as it was (nothing was learnt to save). The read in flight
    is not waited for past its timeout (2 s here; 10 s by default, within Kubernetes' 30 s grace period)."""
    state = tmp_path / "anomaly.state.npz"
    code, text = _stopped_while_its_first_request_hangs(
        tmp_path,
        lambda port: (
            f"anomaly:\n  prometheus_url: http://127.0.0.1:{port}\n"
            "  query_timeout_seconds: 2\n  infer_every_seconds: 60\n"
            "  queries:\n    - {name: up, expr: up, step_seconds: 15}\n"
        ),
        state,
    )
    assert code == 0, text
    assert (
        f"anomaly run stopped by SIGTERM during its warm-up: nothing learnt yet; the state file {state}"
        in text
    )
    assert not state.exists() and "Traceback" not in text, text


def test_sighup_during_the_warm_up_is_logged_and_the_run_goes_on(tmp_path):
    """SIGHUP (a closing SSH session, a `systemctl reload`) was caught only once the ticks began: during the
    start and the warm-up (tens of seconds of history reads on a large fleet) its default action ended the
    run at once, exit 129, nothing closed, where the README says SIGHUP stops no `anomaly run`."""

    def logged_and_still_running(proc: subprocess.Popen[bytes], log: Path) -> None:
        proc.send_signal(signal.SIGHUP)
        _wait_for(log, "SIGHUP: config reload is not supported; restart `gpuwarden anomaly run`", proc)
        assert proc.poll() is None, log.read_text()

    code, text = _stopped_while_its_first_request_hangs(
        tmp_path,
        lambda port: (
            f"anomaly:\n  prometheus_url: http://127.0.0.1:{port}\n"
            "  query_timeout_seconds: 5\n  infer_every_seconds: 60\n"
            "  queries:\n    - {name: up, expr: up, step_seconds: 15}\n"
        ),
        tmp_path / "s",
        before_stop=logged_and_still_running,
    )
    assert code == 0, text
    assert "anomaly run stopped by SIGTERM during its warm-up" in text and "Traceback" not in text, text


def test_sigterm_while_serve_is_asked_what_it_holds_stops_with_a_line_and_exit_0(tmp_path):
    """Before the history is read, the warm-up asks serve which alerts it holds (``GET /api/v2/alerts``). A
    pod stop while a serve that takes the request and does not answer held it was SIGTERM's default
    action: exit 143, no line said, after the start line had said "warming up"."""
    state = tmp_path / "anomaly.state.npz"
    code, text = _stopped_while_its_first_request_hangs(
        tmp_path,
        lambda port: (
            "anomaly:\n  prometheus_url: http://127.0.0.1:1\n"
            f"  alert_url: http://127.0.0.1:{port}\n"
            "  queries:\n    - {name: up, expr: up}\n"
        ),
        state,
        env={**os.environ, "GPUWARDEN_API_TOKEN": "warm-up-stop-token-123"},
    )
    assert code == 0, text
    assert "anomaly run stopped by SIGTERM during its warm-up: nothing learnt yet" in text, text
    assert not state.exists() and "Traceback" not in text, text


# ``anomaly run``, its warm-up followed at once by a SIGTERM to itself: the moment between the warm-up's own
# handler and the schedule's, where the scheduler's imports run.
_SIGTERM_AS_THE_WARM_UP_ENDS = """
import os, signal
import gpuwarden.cli.anomaly_run as run
warmed_up = run._warmed_up
def then_sigterm(*args, **kwargs):
    done = warmed_up(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)
    return done
run._warmed_up = then_sigterm
from gpuwarden.cli import main
main()
"""


def test_sigterm_as_the_warm_up_ends_stops_with_exit_0_and_the_state_saved(tmp_path):
    """The warm-up's handler put back SIGTERM's default action, and the schedule's came after the scheduler's
    imports: a pod stop then killed the run, exit 143, what the history taught not saved."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "anomaly:\n  prometheus_url: http://127.0.0.1:1\n  query_timeout_seconds: 1\n"
        "  infer_every_seconds: 60\n  queries:\n    - {name: up, expr: up, step_seconds: 15}\n"
    )
    state, log = tmp_path / "anomaly.state.npz", tmp_path / "log"
    argv = [sys.executable, "-c", _SIGTERM_AS_THE_WARM_UP_ENDS, "anomaly", "run", "--config", str(cfg)]
    with log.open("wb") as out:
        proc = subprocess.Popen([*argv, "--port", "0", "--state-file", str(state)], stdout=out, stderr=out)
        try:
            code = proc.wait(timeout=READY_SECONDS)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert code == 0, text
    assert f"anomaly state saved to {state}" in text and state.exists(), text
