"""``gpuwarden anomaly``: score a CSV, evaluate on NAB, look up an XID.

The anomaly stage (numpy, pandas, scikit-learn) and the configuration model are imported inside each
command: the rest of the CLI, ``--help`` included, must start without them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO, Protocol

import typer
from rich.markup import escape
from rich.table import Table

from gpuwarden.cli.consoles import console, err_console, option_said, print_error, print_problems
from gpuwarden.cli.incidents_cmd import TEXT_OUTPUTS, output_option
from gpuwarden.cli.logs import configure_logging, keep_running_on_sighup
from gpuwarden.cli.numbers import whole_number, whole_number_argument
from gpuwarden.cli.output_file import STDOUT, cannot_write, check_writable, write_whole, writes_stdout
from gpuwarden.cli.progress import StepProgress
from gpuwarden.clock import SystemClock
from gpuwarden.errors import ConfigError, InputError
from gpuwarden.headers import TOKEN_ENV
from gpuwarden.model import Alert, AlertStatus
from gpuwarden.redaction import hidden_password
from gpuwarden.urls import host_port

if TYPE_CHECKING:
    from anomaly.forwarder import AlertForwarder
    from anomaly.promql import PromQLSource
    from anomaly.service import AnomalyService
    from anomaly.univariate import ScoredSeries
    from gpuwarden.config_anomaly import AnomalyConfig, AnomalyThresholdConfig

anomaly_app = typer.Typer(help="Anomaly detection: score series, evaluate detectors.", no_args_is_help=True)
logger = logging.getLogger(__name__)
evaluate_app = typer.Typer(help="Evaluate the default detector on a benchmark.", no_args_is_help=True)
anomaly_app.add_typer(evaluate_app, name="evaluate")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="YAML configuration (anomaly.thresholds).")
]
RunConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="YAML configuration (its anomaly section: source, queries, detectors)."),
]


def _thresholds(config: Path | None) -> AnomalyThresholdConfig:
    from gpuwarden.config import load_config  # noqa: PLC0415
    from gpuwarden.config_anomaly import AnomalyThresholdConfig  # noqa: PLC0415

    if config is None:
        return AnomalyThresholdConfig()
    return load_config(config, secrets_for={"anomaly"}).anomaly.thresholds


@anomaly_app.command("score")
def score(
    input_path: Annotated[
        Path, typer.Option("--input", help="CSV timestamp,value; a time, or Unix seconds or milliseconds.")
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", help="Where to write timestamp,value,anomaly_score,label; - for stdout (a pipeline)."
        ),
    ],
    config: ConfigOption = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="No progress bar on stderr (there is none unless a terminal)."),
    ] = False,
    keep_repeated: Annotated[
        bool,
        typer.Option(
            "--keep-repeated-timestamps",
            help="Score rows that repeat the time above them, in file order (local times at a clock change).",
        ),
    ] = False,
) -> None:
    """Score a univariate CSV with the default configuration; label 1 where an alert would be raised.

    At a terminal, stderr shows a progress bar while it reads, scores and writes (a million rows take
    under a minute).
    """
    from anomaly.thresholds import ThresholdParams  # noqa: PLC0415
    from anomaly.univariate import read_series_csv, score_many  # noqa: PLC0415

    to_stdout = writes_stdout(output)
    try:
        if str(output) != STDOUT:
            _not_the_input(output, input_path)
            check_writable(output, "--output")
        cfg = _thresholds(config)
        with StepProgress(err_console, quiet=quiet) as progress:
            progress.phase(f"reading {input_path.name}")
            series = read_series_csv(input_path, repeated_times=keep_repeated)
            rows = len(series.values)
            progress.phase("scoring", total=rows)
            params = ThresholdParams.from_config(cfg)
            scored = score_many([series], params, cfg.resolve_after, progress=progress.advance)[0]
            progress.phase(f"writing {'stdout' if to_stdout else output.name}")
            _write_scores(scored, output, to_stdout=to_stdout)
    except (InputError, ConfigError) as exc:
        _print_refusal(exc, {field: ("--input", input_path) for field in _SERIES_FIELDS})
        raise typer.Exit(1) from exc
    # Only the CSV on stdout when it carries the CSV: `... --output - | next-tool` reads rows, nothing else.
    where = "stdout" if str(output) == STDOUT else str(output)
    alerts = int(scored.raised.sum())
    typer.echo(f"{where}: {rows} rows, {alerts} alert{'' if alerts == 1 else 's'}", err=to_stdout)


# The fields of a refusal of a series file (``read_series_csv``), and of a NAB corpus' data folder.
_SERIES_FIELDS = ("input", "timestamp", "value")
_DATA_FIELDS = ("data", *_SERIES_FIELDS)


def _print_refusal(exc: InputError | ConfigError, options: dict[str, tuple[str, Path]]) -> None:
    """``exc`` on stderr; a file's problem as every bad option is said, ``--input 'in.csv': line 3: ...``
    (``options``: the option and its value for each field that names a file's problem); a --config with
    several problems: each named, not "(and 1 more problem)"."""
    option = options.get(exc.field) if isinstance(exc, InputError) else None
    if option is None:
        print_error(exc)
        return
    err_console.print(f"[red]error:[/red] {escape(option_said(option[0], str(option[1]), exc.message))}")


def _write_scores(scored: ScoredSeries, output: Path, *, to_stdout: bool) -> None:
    """The scores to ``output`` whole (``write_whole``), or to stdout when ``output`` names it: through
    ``sys.stdout``, not by reopening a path to a file, a pipe or a deleted capture file."""
    from anomaly import univariate  # noqa: PLC0415 (looked up at the call: tests replace its writer)
    from anomaly.scored_csv import write_scored_rows  # noqa: PLC0415

    if not to_stdout:
        write_whole(output, lambda path: univariate.write_scored_csv(scored, path), "--output")
        return
    sys.stdout.flush()
    try:
        write_scored_rows(scored, sys.stdout.buffer)
        sys.stdout.flush()
    except BrokenPipeError as exc:  # the reader stopped early (`| head`): as `cat` does, no traceback
        with contextlib.suppress(OSError, ValueError):  # and none when Python flushes stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(1) from exc


def _not_the_input(output: Path, input_path: Path) -> None:
    """Refuse an ``--output`` that is the ``--input`` file (by another name or link too): writing the scores
    replaced the series they came from."""
    try:
        same = output.samefile(input_path)
    except OSError:  # no output yet (or no input, which reading it says): not the same file
        return
    if same:
        raise cannot_write(output, "--output", "the --input file; write the scores to another file", of="")


@evaluate_app.command("nab")
def evaluate_nab(
    *,
    data: Annotated[Path, typer.Option("--data", help="NAB data folder (category/file.csv).")],
    windows: Annotated[Path, typer.Option("--windows", help="NAB combined_windows.json.")],
    output: Annotated[str, output_option(TEXT_OUTPUTS, "text or json (one JSON document).")] = "text",
    as_json: Annotated[bool, typer.Option("--json", help="The same as -o json.")] = False,
    tune_only: Annotated[
        bool, typer.Option("--tune-only", help="Score only the tuning split (for development).")
    ] = False,
    config: ConfigOption = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="No progress bar on stderr (there is none unless a terminal)."),
    ] = False,
) -> None:
    """NAB scores (standard, reward_low_FP_rate, reward_low_FN_rate) and window F1, per file and overall.

    At a terminal, stderr shows a progress bar while it reads and scores the corpus (tens of seconds)."""
    from anomaly import nab  # noqa: PLC0415
    from anomaly.thresholds import ThresholdParams  # noqa: PLC0415

    as_json = as_json or output == "json"
    try:
        cfg = _thresholds(config)
        with StepProgress(err_console, quiet=quiet) as progress:
            progress.phase(f"reading {data.name}")
            files = nab.load_corpus(data, windows)
            if tune_only:
                files = nab.tuning_files(files)
            progress.phase(
                f"scoring {len(files)} files", total=max((len(f.series.values) for f in files), default=0)
            )
            params = ThresholdParams.from_config(cfg)
            report = nab.evaluate(files, params, cfg.resolve_after, progress=progress.advance)
    except (InputError, ConfigError) as exc:  # a data file's problem names the folder it is in
        _print_refusal(
            exc, {"windows": ("--windows", windows)} | dict.fromkeys(_DATA_FIELDS, ("--data", data))
        )
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    files_table = Table("file", "split", "windows", "detected", "alerts", "raw standard")
    for name, parts in report.per_file.items():
        s = parts["standard"]
        split = "tune" if nab.is_tuning_file(name) else "held-out"
        files_table.add_row(name, split, str(s.windows), str(s.detected), str(s.alerts), f"{s.raw:.3f}")
    console.print(files_table, markup=False)
    summary_table = Table("set", "files", "windows", *nab.PROFILES, "window F1")
    rows = [(f"split:{k}", v) for k, v in report.splits.items()] + list(report.categories.items())
    rows += [(f"{split}:{c}", v) for split, cats in report.split_categories.items() for c, v in cats.items()]
    for label, summary in rows:
        cells = [f"{v:.1f}" if v is not None else "n/a" for v in summary.scores.values()]
        summary_table.add_row(label, str(summary.files), str(summary.windows), *cells, f"{summary.f1:.3f}")
    console.print(summary_table, markup=False)
    console.print("held-out = files never used to choose the defaults (anomaly.nab.is_tuning_file)")


@anomaly_app.command("run")
def run(
    config: RunConfigOption = None,
    ticks: Annotated[
        int, whole_number("--ticks", 0, help="Stop after this many ticks (0: run until interrupted).")
    ] = 0,
    port: Annotated[
        int | None,
        whole_number(
            "--port",
            0,
            65535,
            help="Serve /metrics here (default anomaly.port, or none with --ticks; 0: none).",
        ),
    ] = None,
    state_file: Annotated[
        Path | None,
        typer.Option(
            "--state-file",
            help="Keep what the detectors learnt here across restarts, saved every"
            " anomaly.state_save_seconds and at stop (default anomaly.state_file, or none with --ticks).",
        ),
    ] = None,
) -> None:
    """Score the configured PromQL queries every infer_every_seconds; serve scores and bands on /metrics.

    Alerts go to `gpuwarden serve` at anomaly.alert_url (token from GPUWARDEN_API_TOKEN) as Prometheus
    sends rule alerts, or are printed as JSON lines when no alert_url is set.
    """
    cfg = _run_config(config, port, ticks)  # before the stage's imports: a refusal is said at once
    state, state_lock = _state_path(cfg, state_file, ticks) or (None, None)
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from anomaly.promql import PromQLSource, PromQuery  # noqa: PLC0415
    from anomaly.service import AnomalyService  # noqa: PLC0415
    from anomaly.snapshot import load_snapshot  # noqa: PLC0415
    from gpuwarden.cli.anomaly_http import serve_http  # noqa: PLC0415

    configure_logging(logging.INFO, fmt="%(asctime)s %(levelname)s %(name)s: %(message)s")
    clock = SystemClock()
    forwarder = _forwarder(cfg, clock)
    queries = [PromQuery(q.name, q.expr, q.step_seconds, q.kind, q.guard) for q in cfg.queries]
    source = PromQLSource(
        cfg.prometheus_url,
        queries,
        clock,
        timeout_seconds=cfg.query_timeout_seconds,
        max_lookback_seconds=cfg.max_lookback_seconds,
        # A slow Prometheus must not hold a tick past the next one: what has not answered by then is a
        # failed read, held like an outage, and read again from where it stopped.
        deadline_seconds=cfg.read_deadline_seconds,
    )
    tick_log = TickLog([source], forwarder, forwarder.on_alert if forwarder else _print_alert)
    service = AnomalyService(cfg, [source], clock, on_alert=tick_log.on_alert)
    registry = CollectorRegistry()
    registry.register(service.collector)
    if forwarder is not None:
        registry.register(forwarder)
    metrics_port = _metrics_port(cfg, port, ticks)
    try:
        server = serve_http(service, registry, cfg.listen_address, metrics_port) if metrics_port else None
    except OSError as exc:
        _close(source, forwarder, state_lock)
        from gpuwarden.cli.preflight import refused_setting  # noqa: PLC0415

        setting = "--port" if port is not None else "anomaly.port / anomaly.listen_address"
        where = host_port(cfg.listen_address, metrics_port)
        said = refused_setting(
            setting, metrics_port, f"cannot serve /metrics on {where}: {exc.strerror or exc}"
        )
        err_console.print(f"[red]error:[/red] {escape(str(said))}")
        raise typer.Exit(1) from exc
    logger.info(_start_line(service, port, ticks, metrics_port))
    try:
        # Prometheus' recent history: the detectors score from the first tick after start. What serve still
        # holds bounds what the history left firing is recalled for (``AnomalyService.warm_up``), and the
        # labels it holds them by are those the forwarder posts them on under (``AlertForwarder.held``),
        # re-escalation or not: the first post after an upgrade that added ``deviation`` was a new alert.
        held = forwarder.held() if forwarder is not None else None
        # What the detectors learnt before the restart, when a snapshot of it fits; the history after it.
        service.warm_up(held, load_snapshot(state, cfg) if state is not None else None)
        if ticks:
            _run_ticks(service, ticks, tick_log.after, state)
        else:
            _run_scheduled(service, tick_log.after, state)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        _close(source, forwarder, state_lock)


class _Closable(Protocol):
    def close(self) -> None: ...


def _close(*held: _Closable | None) -> None:
    """Close what ``anomaly run`` holds (its source, forwarder and hold on the state file; None: not held)."""
    for each in held:
        if each is not None:
            each.close()


def _state_path(cfg: AnomalyConfig, option: Path | None, ticks: int) -> tuple[Path, BinaryIO] | None:
    """Where ``anomaly run`` keeps its state, and its hold on it (``claim_state_file``): ``--state-file``,
    else none for a ``--ticks`` script, else ``anomaly.state_file``. One that cannot be written, or that
    another process holds, is refused (exit 1), naming the setting; the default (not written in the file) is
    a warning, and none is kept: a working directory that cannot be written stopped no ``anomaly run``
    before there was a state file."""
    path = (
        option if option is not None else (None if ticks or cfg.state_file is None else Path(cfg.state_file))
    )
    if path is None:
        return None
    from anomaly.snapshot import StateFileInUse, claim_state_file  # noqa: PLC0415

    chosen = option is not None or "state_file" in cfg.model_fields_set
    setting = "--state-file" if option is not None else "anomaly.state_file"
    try:
        check_writable(path, setting)
        try:
            return path, claim_state_file(path)
        except StateFileInUse as exc:
            raise InputError(option_said(setting, str(path), str(exc))) from exc
    except InputError as exc:
        if not chosen:
            err_console.print(
                f"[yellow]warning:[/yellow] {escape(str(exc))}; what the detectors learn is not kept across a"
                " restart (set anomaly.state_file to a file that can be written, or null)"
            )
            return None
        print_error(exc)
        raise typer.Exit(1) from exc


def _metrics_port(cfg: AnomalyConfig, port: int | None, ticks: int) -> int:
    """Where ``anomaly run`` serves /metrics: ``--port``, else none for a ``--ticks`` script, else
    ``anomaly.port``; 0: nowhere."""
    return port if port is not None else (0 if ticks else cfg.port)


def _start_line(service: AnomalyService, port: int | None, ticks: int, metrics_port: int) -> str:
    """What ``anomaly run`` says before its warm-up (an hour of history, tens of seconds on a large fleet):
    what it reads and how often, where /metrics is (or why it is not served) and where alerts go; a
    password in a URL (basic auth in front of Prometheus) hidden."""
    cfg = service.cfg
    count = len(cfg.queries)
    if metrics_port:
        metrics = f"/metrics on http://{host_port(cfg.listen_address, metrics_port)}/metrics"
    else:
        why = "--port 0" if port is not None else ("--ticks without --port" if ticks else "anomaly.port 0")
        metrics = f"/metrics not served ({why})"
    alerts = (
        f"alerts to {hidden_password(str(cfg.alert_url))}"
        if cfg.alert_url
        else "alerts printed as JSON lines (no anomaly.alert_url)"
    )
    return (
        f"anomaly run: {count} quer{'y' if count == 1 else 'ies'} from"
        f" {hidden_password(str(cfg.prometheus_url))} every"
        f" {cfg.infer_every_seconds:g} s; {metrics}; {alerts}; warming up from the last"
        f" {service.warmup_seconds():g} s of history"
    )


def _run_config(config: Path | None, port: int | None, ticks: int) -> AnomalyConfig:
    """``anomaly run``'s settings, checked as ``config validate`` checks them (``anomaly_checks``): every
    warning, then every refusal, each naming its file and line; exit 1 when any refuses."""
    from gpuwarden.cli.anomaly_checks import (  # noqa: PLC0415
        anomaly_run_refusals,
        anomaly_run_warnings,
        check_detectors,
    )
    from gpuwarden.cli.preflight import check_listen_address  # noqa: PLC0415
    from gpuwarden.config import load_config  # noqa: PLC0415
    from gpuwarden.config_anomaly import AnomalyConfig  # noqa: PLC0415

    try:
        loaded = load_config(config, secrets_for={"anomaly"}) if config is not None else None
    except ConfigError as exc:  # every problem of the file, as config validate lists them
        print_problems(exc)
        raise typer.Exit(1) from exc
    cfg = loaded.anomaly if loaded is not None else AnomalyConfig()
    refusals = []
    try:
        check_detectors(cfg)  # the service would refuse them with a traceback
    except ConfigError as exc:
        refusals.append(exc)
    if _metrics_port(cfg, port, ticks):  # in config validate's words, not the bind's errno
        try:
            check_listen_address(cfg.listen_address, "anomaly.listen_address")
        except ConfigError as exc:
            refusals.append(exc)
    written = loaded is not None and "source" in cfg.model_fields_set
    refusals.extend(anomaly_run_refusals(cfg, os.environ, source_written=written))
    for warning in anomaly_run_warnings(cfg):  # config validate says the same
        err_console.print(
            f"[yellow]warning:[/yellow] {escape(str(loaded.locate(warning) if loaded else warning))}"
        )
    for refusal in refusals:
        hint = "; pass --config FILE" if config is None and refusal.field == "anomaly.queries" else ""
        err_console.print(
            f"[red]error:[/red] {escape(str(loaded.locate(refusal) if loaded else refusal))}{hint}"
        )
    if refusals:
        raise typer.Exit(1)
    return cfg


class TickLog:
    """One log line per scoring tick, in place of a line per HTTP request: the queries read and failed,
    the alerts raised and resolved, and what was sent to anomaly.alert_url (its host and port)."""

    def __init__(
        self, sources: list[PromQLSource], forwarder: AlertForwarder | None, on_alert: Callable[[Alert], None]
    ) -> None:
        self.sources = sources
        self.forwarder = forwarder
        self._on_alert = on_alert
        self.raised = 0
        self.resolved = 0
        self._queries: dict[tuple[str, str], tuple[float | None, int]] = {}
        self._posted = 0

    def on_alert(self, alert: Alert) -> None:
        """The service's callback: count the alert, then print or forward it."""
        if alert.status is AlertStatus.FIRING:
            self.raised += 1
        else:
            self.resolved += 1
        self._on_alert(alert)

    def after(self) -> None:
        """After a tick: send what it raised and resolved, then log the tick's line."""
        from anomaly.promql import named  # noqa: PLC0415 (the anomaly stage loads only for its commands)

        sent = self.forwarder.flush() if self.forwarder is not None else True
        read, failed = 0, []
        for source in self.sources:
            for name, health in source.health().queries.items():
                state = (health.last_success, health.errors_total)
                before = self._queries.get((source.name, name), (None, 0))
                self._queries[source.name, name] = state
                if state == before:
                    continue  # not asked this tick (its step not due)
                # Its last read tells, not its error count: the warm-up's failures, before the first tick,
                # made a first tick that read the query well say it failed.
                if health.up:
                    read += 1
                else:
                    failed.append(name)
        line = f"tick: queries read {read}, failed {len(failed)}"
        if failed:  # the first few: an outage named every query at every tick, 700 characters a line
            line += f" ({named(failed)})"
        elif not read:
            line += " (none due: a query's step_seconds)"
        line += f"; alerts raised {self.raised}, resolved {self.resolved}"
        if self.forwarder is not None:
            line += f"; sent {self.forwarder.posted - self._posted} to {self.forwarder.receiver}"
            line += "" if sent else f" (failed, retrying next tick: {self.forwarder.last_error})"
            self._posted = self.forwarder.posted
        logger.info(line)
        self.raised = self.resolved = 0


def _forwarder(cfg: AnomalyConfig, clock: SystemClock) -> AlertForwarder | None:
    """The alert forwarder to ``gpuwarden serve`` when anomaly.alert_url is set."""
    from anomaly.forwarder import AlertForwarder  # noqa: PLC0415

    if not cfg.alert_url:  # a set one is a usable http(s) URL: the configuration checked it
        return None
    token = os.environ.get(TOKEN_ENV, "")  # one serve takes: _run_config refused any other
    return AlertForwarder(cfg.alert_url, token, clock, resend_seconds=cfg.infer_every_seconds)


def _run_ticks(
    service: AnomalyService, ticks: int, after: Callable[[], object] | None, state: Path | None = None
) -> None:
    """A fixed number of ticks, one every infer_every_seconds (scripts, tests), the state saved to ``state``
    every state_save_seconds and after the last; exit 1 when no source could be read at any of them, so
    that a script learns that nothing was scored."""
    from anomaly.snapshot import save_snapshot  # noqa: PLC0415

    cfg = service.cfg
    read = False
    save_every = max(1, round(cfg.state_save_seconds / cfg.infer_every_seconds))
    for done in range(1, ticks + 1):
        service.infer()
        if after is not None:
            after()
        for source in service.sources:
            health = source.health()
            read = read or health.up
            if not health.up:
                err_console.print(f"source {health.name} down: {health.last_error}", markup=False)
        if done % max(1, round(cfg.fit_every_seconds / cfg.infer_every_seconds)) == 0:
            service.fit()
        if state is not None and (done % save_every == 0 or done == ticks):
            save_snapshot(state, service.snapshot())
        if done < ticks:
            service.clock.sleep(cfg.infer_every_seconds)
    if not read:
        err_console.print(
            f"[red]error:[/red] no source could be read in {ticks} tick{'s' if ticks > 1 else ''}:"
            " nothing was scored (the lines above say why)"
        )
        raise typer.Exit(1)


def _run_scheduled(service: AnomalyService, after: Callable[[], object] | None, state: Path | None) -> None:
    """fit_every / infer_every (and the state's saves to ``state``) on APScheduler until SIGINT or SIGTERM,
    then the state saved a last time."""
    from anomaly.scheduler import AnomalyScheduler  # noqa: PLC0415

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    keep_running_on_sighup("anomaly run", " (the detectors warm up again from Prometheus' history)")
    scheduler = AnomalyScheduler(service, after_infer=after, state_file=state)
    scheduler.start()
    try:
        while not stop.wait(1.0):  # a timed wait: the main thread must return to run the signal handlers
            pass
    finally:
        scheduler.shutdown()


def _print_alert(alert: Alert) -> None:
    typer.echo(
        json.dumps(
            {
                "status": alert.status.value,
                "labels": dict(alert.labels),
                "score": alert.score,
                "recommended_action": alert.recommended_action.value,
                "summary": alert.annotations.get("summary", ""),
            }
        )
    )


@anomaly_app.command("xid")
def xid(
    code: Annotated[int, whole_number_argument("code", 1, help="XID code.")],
    output: Annotated[str, output_option(TEXT_OUTPUTS, "text or json (one JSON document).")] = "text",
) -> None:
    """What an XID means and what gpuwarden recommends doing about it."""
    from anomaly.xidsignatures import load_xid_catalog  # noqa: PLC0415
    from gpuwarden.xid import xid_action  # noqa: PLC0415

    catalog = load_xid_catalog()
    entry = catalog.get(code)
    if entry is None:
        err_console.print(
            f"[red]error:[/red] XID {code} is not in the catalog (NVIDIA's XID catalog: {len(catalog)} codes"
            f" from {min(catalog)} to {max(catalog)}); check the code: the number after the PCI address in"
            " the kernel's 'NVRM: Xid' line"
        )
        raise typer.Exit(1)
    if output == "json":  # for a script or a hook: the same fields as the text
        document = {
            "xid": entry.xid,
            "mnemonic": entry.mnemonic,
            "description": entry.description,
            "immediate_action": entry.immediate_action,
            "recommended_action": xid_action(entry).value,
            "investigatory_action": entry.investigatory_action,
        }
        typer.echo(json.dumps(document, indent=2))
        return
    typer.echo(f"XID {entry.xid} {entry.mnemonic}: {entry.description}")
    typer.echo(f"immediate: {entry.immediate_action} -> {xid_action(entry).value}")
    typer.echo(f"investigate: {entry.investigatory_action}")


def register(app: typer.Typer) -> None:
    """Add the ``anomaly`` group to the root app."""
    app.add_typer(anomaly_app, name="anomaly")
