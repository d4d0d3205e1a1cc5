"""What ``anomaly run`` checks at its start, from its settings and variables alone: what refuses it, and
what it warns of. ``config validate`` says the same, through the same functions (``preflight``)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from gpuwarden.cli.alerting_checks import over_plain_http
from gpuwarden.cli.machine_checks import NotRegularFile, file_start
from gpuwarden.cli.output_file import unwritable
from gpuwarden.cli.tls_trust import ca_file_refusal
from gpuwarden.errors import ConfigError
from gpuwarden.headers import TOKEN_ENV, token_missing, token_problem
from gpuwarden.limits import MAX_WINDOW_SECONDS

if TYPE_CHECKING:
    from gpuwarden.config_anomaly import AnomalyConfig


def anomaly_run_refusals(
    cfg: AnomalyConfig, environ: Mapping[str, str], *, source_written: bool, state_file_read: bool = True
) -> list[ConfigError]:
    """Why ``anomaly run`` refuses to start with these settings and variables (``anomaly_run_refusal``, an
    ``alert_url`` without the token it sends there, and a ``state_file`` written in the file that cannot be
    written: ``config validate`` said ok to it), each naming its setting or variable. ``state_file_read``:
    false where ``--state-file`` or ``--ticks`` leaves the setting unread."""
    refusals = []
    refusal = anomaly_run_refusal(cfg, source_written=source_written)
    if refusal is not None:
        refusals.append(refusal)
    if state_file_read and cfg.state_file is not None and "state_file" in cfg.model_fields_set:
        # Left unset, the default in the working directory is a warning at the start only.
        path = Path(cfg.state_file)
        unusable = unwritable(path)
        foreign = foreign_state_file(path) if unusable is None else None
        if unusable is not None:
            of, reason = unusable
            refusals.append(ConfigError(f"'{path}': cannot write {of}{reason}", field="anomaly.state_file"))
        elif foreign is not None:
            refusals.append(ConfigError(f"'{path}': {foreign}", field="anomaly.state_file"))
    unloadable = ca_file_refusal(environ, "anomaly run")  # its clients for Prometheus and alert_url load it
    if unloadable is not None:
        refusals.append(unloadable)
    token = environ.get(TOKEN_ENV)
    problem = token_problem(token) if token else None
    if cfg.alert_url and not token:
        refusals.append(
            ConfigError(
                f"anomaly run refuses to start: it is set but {token_missing(token)}; export the token"
                " `gpuwarden serve` takes (it refuses alerts without it)",
                field="anomaly.alert_url",
            )
        )
    elif cfg.alert_url and problem is not None:  # serve refuses it too: every forward would be refused
        refusals.append(
            ConfigError(
                f"{problem}; anomaly run refuses to start with it (it sends it to anomaly.alert_url)",
                field=TOKEN_ENV,
            )
        )
    return refusals


_SNAPSHOT_START = b"PK\x03\x04"  # a state file is an .npz, a ZIP archive: every one starts so, damaged or not


def foreign_state_file(path: Path) -> str | None:
    """Why ``path`` is another program's file that ``anomaly run``'s first save would replace, or None: one
    that exists, is not empty and does not start as a state file does (the incident store's SQLite file,
    the configuration: the snapshot's warning said "cut short or corrupt?", and the save replaced it). A
    snapshot of ours that cannot be used (damaged, of another version, or the zeros a power cut can leave of
    one) is left to the warning and the save: refused, ``anomaly run`` would not start again after one."""
    try:
        start = file_start(path, len(_SNAPSHOT_START))
    except NotRegularFile:  # a FIFO would hold the read; a save renames over it
        return "it is not a regular file, and its first save would replace it; give a file name of its own"
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}; give a file anomaly run can read and write"
    if start == _SNAPSHOT_START or not start.strip(b"\x00"):  # empty, or zeros: a save a power cut lost
        return None
    return (
        "it is not an anomaly state file (an .npz that anomaly run wrote), and its first save would replace"
        " it; give a file name of its own"
    )


def anomaly_run_refusal(cfg: AnomalyConfig, *, source_written: bool) -> ConfigError | None:
    """Why ``anomaly run`` refuses to start with these settings, or None. It reads the queries from
    Prometheus: ``in-process`` is the demo's source (its simulated fleet's collectors, in its own process),
    which ``anomaly run`` has not, so a file that writes it is refused rather than read from Prometheus
    anyway; left unset, the source is the queries' Prometheus."""
    if source_written and cfg.source == "in-process":
        return ConfigError(
            "anomaly run refuses in-process: that is the demo's own source (its simulated fleet, inside"
            " `gpuwarden demo`); anomaly run reads anomaly.queries from anomaly.prometheus_url: write"
            " source: prometheus",
            field="anomaly.source",
        )
    if not cfg.queries:
        return ConfigError(
            "anomaly run refuses to start: no query to score; declare the PromQL queries under"
            " anomaly.queries, as deploy/gpuwarden.example.yaml does",
            field="anomaly.queries",
        )
    return None


def check_detectors(cfg: AnomalyConfig) -> None:
    """``anomaly.detectors`` names at least one detector, and every name in it is one (the defaults are: the
    registry, which imports numpy and scikit-learn, is asked only about other names)."""
    from gpuwarden.config_anomaly import AnomalyConfig  # noqa: PLC0415

    defaults = AnomalyConfig().detectors
    if not cfg.detectors:  # anomaly run read every query at each tick, scored nothing and said nothing
        raise ConfigError(
            "[] names no detector, so anomaly run would score nothing and raise no alert; list those to run"
            f" ({', '.join(defaults)}), or leave the setting out for all of them",
            field="anomaly.detectors",
        )
    if all(name in defaults for name in cfg.detectors):
        return
    from anomaly.service import builtin_registry  # noqa: PLC0415

    known = builtin_registry(cfg).names()
    unknown = [name for name in cfg.detectors if name not in known]
    if unknown:
        raise ConfigError(f"unknown detector(s) {unknown}; known: {known}", field="anomaly.detectors")


def anomaly_run_warnings(cfg: AnomalyConfig) -> list[ConfigError]:
    """What ``anomaly run`` warns of at its start, and ``config validate`` with it: detectors without the
    queries they read, unguarded range functions, query steps longer than the tick, a presence deadline
    shorter than the presence queries' step or not shorter than the age a GPU is forgotten at. None without
    queries: anomaly run refuses to start then (``anomaly_run_refusal``), and that is what matters."""
    from gpuwarden.range_guard import check_range_guards  # noqa: PLC0415

    if not cfg.queries:
        return []
    return [
        *check_alert_url(cfg),
        *check_detector_queries(cfg),
        *check_range_guards(cfg),
        *check_query_steps(cfg),
        *check_absent_after(cfg),
        *check_absent_forget(cfg),
    ]


def check_alert_url(cfg: AnomalyConfig) -> list[ConfigError]:
    """A warning when the API token would go over plain HTTP to another machine (``anomaly.alert_url``), as
    for Slack's and the webhooks' tokens."""
    if not cfg.alert_url:
        return []
    warning = over_plain_http(
        str(cfg.alert_url),
        f"the API token ({TOKEN_ENV})",
        "anomaly.alert_url",
        " (serve with --web.config.file, or a TLS proxy in front of it), or serve's address on this machine"
        " (localhost)",
    )
    return [] if warning is None else [warning]


def check_query_steps(cfg: AnomalyConfig) -> list[ConfigError]:
    """Warnings, one per query whose step is longer than the tick: most ticks then read nothing new of it,
    and its alerts are raised and resolved by its reads, not by the ticks."""
    return [
        ConfigError(
            f"query {query.name}: step_seconds {query.step_seconds:g} is longer than"
            f" anomaly.infer_every_seconds {cfg.infer_every_seconds:g}: it is read once every"
            f" {query.step_seconds:g} s, not every tick, and the ticks between its reads neither raise"
            f" nor resolve its alerts: pending_ticks and the resolve counts count its reads, so they"
            f" resolve {cfg.immediate_resolve_after * query.step_seconds:g} s (signatures) to"
            f" {cfg.thresholds.resolve_after * query.step_seconds:g} s (learned detectors) after the"
            f" fault ends; set its step_seconds to at most {cfg.infer_every_seconds:g}",
            field=f"anomaly.queries[{k}].step_seconds",
            reads=(
                "anomaly.infer_every_seconds",
                "anomaly.immediate_resolve_after",
                "anomaly.thresholds.resolve_after",
            ),
        )
        for k, query in enumerate(cfg.queries)
        if query.step_seconds > cfg.infer_every_seconds
    ]


def check_absent_after(cfg: AnomalyConfig) -> list[ConfigError]:
    """A warning when ``absent_after_seconds`` is shorter than the step of every presence query: a read
    ends anywhere on that step's grid, so a GPU's newest presence sample is up to a step old at a tick, and
    at every tick that ends further past the grid than the deadline a GPU still reporting reads absent.
    Every GPU at once is too many to report (``max_absent_share``), so the detector goes blind: a node that
    is really down raises nothing. Not an error: it mishandles one detector of a service that still scores
    the rest, and a file that ran before an upgrade must not stop ``anomaly run`` (``check_query_steps``
    is a warning for the same reason). The tick does not enter: a read's newest sample is a step old at
    most, however long the tick."""
    if "presence" not in cfg.detectors:
        return []
    presence = [
        (k, q)
        for k, q in enumerate(cfg.queries)
        if any(fnmatch.fnmatchcase(q.name, pattern) for pattern in cfg.presence_queries)
    ]
    if not presence:
        return []  # check_detector_queries says so
    k, query = min(presence, key=lambda kq: kq[1].step_seconds)  # a GPU is seen by its freshest series
    step, absent = query.step_seconds, cfg.absent_after_seconds
    if absent >= step:
        return []
    # The detector forgets a GPU older than absent_forget_seconds before it asks whether it is absent: a
    # deadline raised to that age or past it would leave the detector as blind as the one it replaces.
    forget = cfg.absent_forget_seconds
    also = f" and absent_forget_seconds above it (now {forget:g}: older, a GPU is forgotten, not reported)"
    return [
        ConfigError(
            f"{absent:g} s is shorter than step_seconds {step:g} of query {query.name}, the presence query"
            f" read most often: a GPU's newest sample is up to {step:g} s old at a tick, so at every tick"
            f" read more than {absent:g} s past that step's grid every GPU still reporting reads absent"
            " (GpuExporterStale, NodeDown; or, the whole fleet at once, nothing: a node really down raises"
            f" no alert); set absent_after_seconds to {3 * step:g} (at least {step:g}; three steps, as the"
            f" default 90 s is to the default 30 s step){also if 3 * step >= forget else ''}, or shorten"
            " that query's step_seconds",
            field="anomaly.absent_after_seconds",
            reads=(
                f"anomaly.queries[{k}].step_seconds",
                "anomaly.presence_queries",
                "anomaly.detectors",
                "anomaly.absent_forget_seconds",
            ),
        )
    ]


def _num(seconds: float) -> str:
    """Seconds as a YAML value reads them back: whole seconds without an exponent (``:g`` wrote a year as
    3.16224e+07)."""
    return f"{seconds:.0f}" if seconds == int(seconds) else f"{seconds:g}"


def check_absent_forget(cfg: AnomalyConfig) -> list[ConfigError]:
    """A warning when ``absent_after_seconds`` is not shorter than ``absent_forget_seconds``: the detector
    forgets a GPU older than the second before it asks whether it is older than the first, so such a GPU
    is forgotten the tick it would have read absent and a node really down raises nothing. A warning, not
    an error, for the reason ``check_absent_after`` gives."""

    absent, forget = cfg.absent_after_seconds, cfg.absent_forget_seconds
    if "presence" not in cfg.detectors or absent < forget:
        return []
    # The forget age is bounded by a year: a fix past it would be refused by the next `config validate`.
    raised = min(max(2 * absent, absent + 3600), MAX_WINDOW_SECONDS)
    fix = (
        f"raise absent_forget_seconds above it (to {_num(raised)}, say) or lower absent_after_seconds"
        if raised > absent
        else f"lower absent_after_seconds under {_num(forget)}"
    )
    return [
        ConfigError(
            f"{absent:g} s is not shorter than absent_forget_seconds {forget:g}: a GPU silent that long is"
            f" forgotten before it reads absent, so GpuExporterStale and NodeDown are never raised; {fix}",
            field="anomaly.absent_after_seconds",
            reads=("anomaly.absent_forget_seconds", "anomaly.detectors"),
        )
    ]


def check_detector_queries(cfg: AnomalyConfig) -> list[ConfigError]:
    """Warnings, one per configured detector that lacks queries it reads (it would find nothing, silently:
    no GpuLost for a GPU that fell off the bus without ``gpuwarden_gpu_up``)."""
    from anomaly.needs import NEEDS_SETTINGS, missing_queries  # noqa: PLC0415

    return [
        ConfigError(
            f"detector {detector!r} reads queries named {', '.join(names)}, which are not configured: what"
            " it reads them for never fires (`a|b`: either will do); add them (named after the metric), or"
            " drop the detector from anomaly.detectors",
            field="anomaly.queries",
            reads=("anomaly.detectors", *(f"anomaly.{name}" for name in NEEDS_SETTINGS.get(detector, ()))),
        )
        for detector, names in missing_queries(cfg).items()
    ]
