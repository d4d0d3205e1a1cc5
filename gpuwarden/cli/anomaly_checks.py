"""What ``anomaly run`` checks at its start, from its settings and variables alone: what refuses it, and
what it warns of. ``config validate`` says the same, through the same functions (``preflight``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from gpuwarden.errors import ConfigError
from gpuwarden.headers import TOKEN_ENV, token_missing

if TYPE_CHECKING:
    from gpuwarden.config_anomaly import AnomalyConfig


def anomaly_run_refusals(
    cfg: AnomalyConfig, environ: Mapping[str, str], *, source_written: bool
) -> list[ConfigError]:
    """Why ``anomaly run`` refuses to start with these settings and variables (``anomaly_run_refusal``,
    and an ``alert_url`` without the token it sends there), each naming its setting or variable."""
    from gpuwarden.config_rules import token_problem  # noqa: PLC0415 - config_rules brings pydantic

    refusals = []
    refusal = anomaly_run_refusal(cfg, source_written=source_written)
    if refusal is not None:
        refusals.append(refusal)
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
    """Every name in ``anomaly.detectors`` is a detector (the defaults are: the registry, which imports
    numpy and scikit-learn, is asked only about other names)."""
    from gpuwarden.config_anomaly import AnomalyConfig  # noqa: PLC0415

    defaults = AnomalyConfig().detectors
    if all(name in defaults for name in cfg.detectors):
        return
    from anomaly.service import builtin_registry  # noqa: PLC0415

    known = builtin_registry(cfg).names()
    unknown = [name for name in cfg.detectors if name not in known]
    if unknown:
        raise ConfigError(f"unknown detector(s) {unknown}; known: {known}", field="anomaly.detectors")


def anomaly_run_warnings(cfg: AnomalyConfig) -> list[ConfigError]:
    """What ``anomaly run`` warns of at its start, and ``config validate`` with it: detectors without the
    queries they read, unguarded range functions, query steps longer than the tick. None without queries:
    anomaly run refuses to start then (``anomaly_run_refusal``), and that is what matters."""
    from gpuwarden.range_guard import check_range_guards  # noqa: PLC0415

    if not cfg.queries:
        return []
    return [*check_detector_queries(cfg), *check_range_guards(cfg), *check_query_steps(cfg)]


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
