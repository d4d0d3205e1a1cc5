"""The ``anomaly`` section of the configuration: the anomaly service, its queries and adaptive thresholds.

Kept apart from ``gpuwarden.config`` (the other sections and the loading), which it is a part of: it is the
largest section, and the one the anomaly stage reads. A query's own settings are in
``gpuwarden.config_anomaly_queries``.
"""

from __future__ import annotations

import fnmatch
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from gpuwarden.config_anomaly_queries import AnomalyQueryConfig, parse_data_range
from gpuwarden.config_rules import LocalPath, PrometheusUrl, Section, ServeUrl
from gpuwarden.errors import ConfigError
from gpuwarden.headers import TOKEN_ENV
from gpuwarden.limits import MAX_INTERVAL_SECONDS, MAX_WINDOW_SECONDS
from gpuwarden.promql_text import promql_bracket_problem, promql_regex_problem
from gpuwarden.range_guard import GUARD_UNREAD, range_shape

# What other modules, the benchmarks and the tests import from here, wherever it is defined.
__all__ = [
    "DEFAULT_STATE_FILE",
    "AnomalyConfig",
    "AnomalyQueryConfig",
    "AnomalyThresholdConfig",
    "Name",
    "check_anomaly_queries",
    "parse_data_range",
]

# A GPU's temperature follows its power over tens of seconds to a few minutes, and a failed cooler is a soft
# fault, due within 5 minutes: the thermal detector's settings are bounded by both (the reasons at the fields,
# each bound proven in tests/anomaly/test_thermal_outage.py).
THERMAL_MAX_LAG_SECONDS = 180.0
THERMAL_MAX_SETTLE_SECONDS = 600.0
THERMAL_MAX_ALPHA = 0.1
THERMAL_MAX_RIDGE_WATTS = 50.0
DEFAULT_STATE_FILE = "gpuwarden-anomaly.state.npz"  # ``anomaly.state_file``: beside api.db's gpuwarden.db


def _named(value: str) -> str:
    """A query, metric or label name that names something: an empty one (``fleet_queries: [""]``) names no
    query, or every one as a substring, and was taken without a word."""
    if not value.strip():
        raise ValueError(f"an empty name ({value!r}) names nothing; remove it from the list")
    return value


Name = Annotated[str, AfterValidator(_named)]
"""An entry of a list of query, metric or label names."""


class AnomalyThresholdConfig(Section):
    """Adaptive thresholds; the defaults were tuned on the NAB tuning split only (see anomaly/nab.py)."""

    alpha: float = Field(0.01, gt=0, le=1, description="baseline EWMA weight per sample")
    scale_alpha: float = Field(0.005, gt=0, le=1, description="EWMA weight of the absolute error")
    seasonal_alpha: float = Field(
        0.1,
        gt=0,
        le=1,
        description="weight per sample of a seasonal bucket (`anomaly score`); not read by `anomaly run`'s"
        " adaptive_seasonality, whose buckets learn a quarter of their error a day",
    )
    k: float = Field(8.0, gt=0, description="band half-width in mean absolute errors; score 1 at the band")
    warmup: int = Field(30, ge=0, description="samples per series during which nothing fires")
    direction: Literal["up", "down", "both"] = "both"
    min_deviation: float = Field(0.0, ge=0, description="absolute floor of the band half-width")
    min_relative_deviation: float = Field(0.0, ge=0, description="band floor as a fraction of |yhat|")
    seasonality: bool = True
    seasonal_gain: float = Field(0.7, gt=0, le=1)
    clip: float = Field(4.0, gt=0)
    fast_alpha: float = Field(0.1, gt=0, le=1)
    volatility_k: float = Field(3.0, ge=0)
    tail_quantile: float = Field(0.99, ge=0, lt=1)
    tail_k: float = Field(1.5, gt=0)
    tail_rate: float = Field(0.01, gt=0, le=1)
    error_clip: float = Field(1.0, ge=1, description="errors are winsorised at error_clip x clip bands")
    seasonal_freeze: bool = Field(False, description="anomalous samples do not teach the seasonal buckets")
    resolve_after: int = Field(24, ge=1, description="quiet samples before an alert resolves")


class AnomalyConfig(Section):
    """The anomaly detection service."""

    source: Literal["prometheus", "in-process"] = Field(
        "prometheus",
        description=(
            "where anomaly run reads: Prometheus, written or not (the default said `in-process`, which"
            " config show printed though anomaly run read Prometheus); in-process is the demo's own source"
        ),
    )
    prometheus_url: PrometheusUrl = "http://127.0.0.1:9090"
    query_timeout_seconds: float = Field(10.0, gt=0, le=MAX_INTERVAL_SECONDS)
    queries: list[AnomalyQueryConfig] = Field(default_factory=list)
    detectors: list[str] = Field(
        default_factory=lambda: [
            "adaptive",
            "level_shift",
            "multivariate",
            "fleet",
            "signatures",
            "thermal",
            "presence",
        ]
    )
    adaptive_metrics: list[Name] = Field(
        default_factory=lambda: [
            "DCGM_FI_DEV_POWER_USAGE",
            "DCGM_FI_DEV_SM_CLOCK",
            "DCGM_FI_DEV_GPU_UTIL",
            "DCGM_FI_DEV_FB_USED",
            "*step_time*",
            "*latency*",
        ],
        description=(
            "metric names (fnmatch patterns) the adaptive detector scores, configured queries included (a"
            " query's own `adaptive: true/false` overrides); '*' = all. Temperatures are left to the fleet"
            " detector: they lag every workload change by minutes; flags and counters to the signatures."
        ),
    )
    adaptive_seasonality: bool = Field(
        False,
        description=(
            "hour-of-day/week baselines in the service's adaptive detector. Off by default: the buckets learn"
            " from every sample within the hour, so on a series with a cycle shorter than an hour (an"
            " inference replica's load) the bucket only tracks the last minutes and is stale at each hour"
            " change, which raised false alerts in the GPU-fault evaluation (tuning seeds 0-1)"
        ),
    )
    min_deviation_by_metric: dict[str, float] = Field(
        default_factory=lambda: {
            "DCGM_FI_DEV_GPU_TEMP": 5.0,
            "DCGM_FI_DEV_MEMORY_TEMP": 5.0,
            "DCGM_FI_DEV_POWER_USAGE": 50.0,
            "DCGM_FI_DEV_SM_CLOCK": 150.0,
            "DCGM_FI_DEV_GPU_UTIL": 15.0,
            "DCGM_FI_DEV_FB_USED": 2048.0,
        },
        description="band floor per metric (fnmatch patterns): integer-valued, flat series need one",
    )
    reescalate_alerts: bool = Field(
        True,
        description=(
            "re-raise (resolve, then raise anew) a learned detector's firing alert whose score came"
            " down to half its peak, its value back in its band for pending_ticks reads (a recovery), and"
            " climbs to twice the lowest it came down to: a new fault under an earlier one's open alert."
            " A score only less far out on the side it was raised on is no recovery: a thermal runaway"
            " throttling its clock in waves stays one alert"
        ),
    )
    pending_ticks: int = Field(
        3,
        ge=1,
        description="ticks a learned detector must agree before alerting (reads of the query: a tick at which"
        " it was not due counts neither way)",
    )
    score_outside_data_range: float = Field(
        5.0,
        gt=1,
        description=(
            "the score of a value outside its query's data_range (vmanomaly's"
            " anomaly_score_outside_data_range; its docs recommend 5 over their backward-compatible 1.01):"
            " above 1, so it is anomalous, and"
            " well above, so a Grafana panel shows a broken query or exporter apart from a mere excursion"
        ),
    )
    immediate_resolve_after: int = Field(
        4,
        ge=1,
        description=(
            "quiet ticks before an alert of a deterministic signature (GPU lost, XID, ECC, clock slowdown,"
            " NVLink) resolves: the condition it tests is exact, and a GPU that fails again minutes after"
            " its repair must raise again (thresholds.resolve_after keeps learned detectors' alerts longer)"
        ),
    )
    infer_every_seconds: float = Field(30.0, ge=0.001, le=MAX_INTERVAL_SECONDS)
    fit_every_seconds: float = Field(3600.0, gt=0, le=MAX_WINDOW_SECONDS)
    alert_url: ServeUrl | None = Field(
        None,
        description=(
            "base URL of `gpuwarden serve` that `anomaly run` posts its alerts to (token from"
            f" {TOKEN_ENV}); unset: they are printed as JSON lines"
        ),
    )
    listen_address: str = Field("127.0.0.1", description="where `anomaly run` serves /metrics")
    port: int = Field(
        9701, ge=0, le=65535, description="`anomaly run`'s /metrics port (scores, bands, health); 0: none"
    )
    max_lookback_seconds: float = Field(
        3600.0, gt=0, le=MAX_WINDOW_SECONDS, description="longest catch-up after an outage"
    )
    latency_offset_seconds: float = Field(
        0.0,
        ge=0,
        le=MAX_WINDOW_SECONDS,
        description=(
            "read data only up to this long ago (vmanomaly's latency_offset): VictoriaMetrics hides its"
            " last -search.latencyOffset (30 s by default; empty, or the last older sample repeated), so set"
            " this to that value there; Prometheus has the latest scrape at once (0)"
        ),
    )
    forget_after_seconds: float = Field(
        900.0, gt=0, le=MAX_WINDOW_SECONDS, description="a series unseen this long is dropped"
    )
    stale_after_seconds: float = Field(
        120.0, gt=0, le=MAX_WINDOW_SECONDS, description="no successful read this long: stale"
    )
    thresholds: AnomalyThresholdConfig = Field(default_factory=AnomalyThresholdConfig)
    level_shift_queries: list[Name] = Field(
        default_factory=lambda: ["step_time", "latency", "duration"],
        description="substrings of query names scored by the level-shift detector",
    )
    fleet_queries: list[Name] = Field(
        default_factory=lambda: ["DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SM_CLOCK"],
        description="compared across peers (same model and workload); utilisation varies too much by replica",
    )
    multivariate_queries: list[Name] = Field(
        default_factory=lambda: [
            "DCGM_FI_DEV_GPU_TEMP",
            "DCGM_FI_DEV_POWER_USAGE",
            "DCGM_FI_DEV_SM_CLOCK",
            "DCGM_FI_DEV_GPU_UTIL",
            "DCGM_FI_DEV_FB_USED",
        ]
    )
    fleet_peer_labels: list[Name] = Field(default_factory=lambda: ["modelName"])
    fleet_k: float = Field(6.0, gt=0)
    fleet_k_exit: float = Field(
        3.0,
        gt=0,
        description=(
            "hysteresis of the fleet detector: a GPU enters at fleet_k and leaves only below fleet_k_exit, so"
            " one hovering at its peers' band edge raises once (tuning seeds 500-503)"
        ),
    )
    fleet_hold_ticks: int = Field(
        240,
        ge=1,
        description=(
            "quiet ticks before a fleet alert resolves: a lemon GPU drifting in and out is one alert"
            " (fleet_rearm_ticks where no other alert is open on its GPU)"
        ),
    )
    fleet_load_query: str | None = Field(
        "DCGM_FI_DEV_GPU_UTIL",
        description="the load metric the fleet detector nets load-following metrics of (null: compare as is)",
    )
    fleet_load_adjusted: list[Name] = Field(
        default_factory=lambda: ["DCGM_FI_DEV_POWER_USAGE"],
        description=(
            "metrics (fnmatch patterns) the fleet detector compares net of load: inference replicas each"
            " follow their own traffic, and one at its peak draws a third more power than the median"
            " replica (fresh seeds 700-707 and 800-803)"
        ),
    )
    fleet_min_deviation_by_metric: dict[str, float] = Field(
        default_factory=lambda: {"DCGM_FI_DEV_GPU_TEMP": 10.0},
        description=(
            "smallest gap from the peers' median that the fleet detector may alert on (fnmatch patterns):"
            " inference replicas at different points of their load cycle differ by several degrees, and"
            " integer temperatures collapse the peers' MAD (tuning seeds 100-107)"
        ),
    )
    thermal_lag_seconds: float = Field(
        20.0,
        gt=0,
        # A GPU's temperature follows its power over tens of seconds to a few minutes. Set longer than the
        # GPU's own lag, the detector reads it as slower than it is: at 600 s (or 180 s for a GPU lagging
        # 120 s) a cooler failing as a job ended was not flagged in 10 minutes; the soft-fault deadline is 5.
        le=THERMAL_MAX_LAG_SECONDS,
        description=(
            "how long a GPU's temperature takes to follow its power (its own lag, at most 180 s: a longer one"
            " than the GPU's hides a cooler failing as its job ends)"
        ),
    )
    thermal_alpha: float = Field(
        0.01,
        gt=0,
        # At 0.2 its line followed each sample: normal load swings scored 13 and a cooler failing on an idle
        # GPU was never flagged (up to 1 was taken). Above 0.01 it learns a job's end faster than a slow GPU
        # cools, so a cooler failing as a job ends on a GPU lagging 120 s is flagged late (0.02: 8 minutes)
        # or not in 10 minutes (0.03-0.05); at 0.1 in time again (330 s).
        le=THERMAL_MAX_ALPHA,
        description=(
            "the thermal detector's weight per sample in its fit of temperature on power (at most 0.1: more"
            " follows every load swing)"
        ),
    )
    thermal_k: float = Field(
        6.0, gt=0, description="the thermal band's half-width in mean absolute errors: score 1 at the band"
    )
    thermal_min_deviation: float = Field(
        3.0,
        gt=0,
        description="the thermal band's floor: degrees hotter than its power explains where a GPU scores 1",
    )
    thermal_ridge_watts: float = Field(
        10.0,
        gt=0,
        # Squared by the detector (1e200 overflowed at anomaly run's start), and a margin a power must fall
        # by before a GPU counts as cooling: at 100 W a cooler failing as a job ended was not flagged in 10
        # minutes (up to 10,000 was taken); at 50, within 300-360 s (GPUs lagging 20-120 s).
        le=THERMAL_MAX_RIDGE_WATTS,
        description=(
            "watts the thermal slope is shrunk with (ridge), and the margin above any power learnt at past"
            " which a power is new (a guess, unscored); at most 50"
        ),
    )
    thermal_warmup: int = Field(
        60,
        ge=0,
        le=1_000_000,
        description="samples per GPU the thermal detector learns from before it scores",
    )
    thermal_hold_seconds: float = Field(
        6 * 3600.0,
        gt=0,
        le=MAX_WINDOW_SECONDS,
        description=(
            "the longest time hot a thermal alert is held without learning: a GPU that runs hotter for good"
            " (a warmer room) is learnt after it"
        ),
    )
    thermal_settle_seconds: float = Field(
        600.0,
        ge=0,
        # Its fifth is the longest lag it allows a GPU cooling down after its power fell, so it delays the
        # flag of a cooler failing as a job ends: alerted after 300-330 s at 600 (GPUs lagging 20-120 s),
        # first scored over 1 after 9 minutes at 1,800 and not within 15 at 3,600 (up to 366 days was taken).
        le=THERMAL_MAX_SETTLE_SECONDS,
        description=(
            "how long a power above any the thermal detector scored a GPU at must last before it scores there"
            " (the temperature may lag the power longer than thermal_lag_seconds); a fifth of it is the"
            " longest lag it allows a GPU cooling down after its power fell, and a temperature still"
            " climbing after it is scored (at most 600: a longer one delays the flag of a cooler failing as"
            " a job ends past the 5-minute soft-fault deadline)"
        ),
    )
    thermal_peer_labels: list[Name] = Field(
        default_factory=lambda: ["modelName"],
        description=(
            "labels whose values make GPUs thermal peers ([]: all are; a GPU lacking one has none): a GPU at"
            " a power above any it scored at is scored against its peers' median slope"
        ),
    )
    thermal_min_peers: int = Field(
        3,
        ge=1,
        le=1_000_000,
        description="peers that learnt their slope over a wide power range needed to score a GPU by theirs",
    )
    thermal_peer_tolerance: float = Field(
        0.25,
        ge=0,
        description=(
            "how much steeper than its peers' median slope (a fraction of it, plus 3 sigmas of their spread)"
            " a GPU's temperature may climb with power before it scores 1"
        ),
    )
    presence_queries: list[Name] = Field(
        default_factory=lambda: [
            "DCGM_FI_DEV_GPU_TEMP",
            "DCGM_FI_DEV_POWER_USAGE",
            "DCGM_FI_DEV_SM_CLOCK",
            "DCGM_FI_DEV_GPU_UTIL",
            "DCGM_FI_DEV_FB_USED",
        ],
        description="metric names (fnmatch patterns) whose arrival shows a GPU is reported",
    )
    absent_after_seconds: float = Field(
        90.0,
        gt=0,
        le=MAX_WINDOW_SECONDS,
        description="no presence series of a GPU for this long: exporter stale / node down",
    )
    absent_forget_seconds: float = Field(
        3600.0,
        gt=0,
        le=MAX_WINDOW_SECONDS,
        description="an absent GPU is dropped (its alert resolves) after this long",
    )
    multivariate_trees: int = Field(100, ge=10, le=10_000)
    multivariate_history: int = Field(4096, ge=64, le=1_000_000)
    state_file: LocalPath | None = Field(
        DEFAULT_STATE_FILE,
        description="where `anomaly run` keeps what its detectors learnt across a restart (relative to its"
        " working directory, as api.db is; `--state-file` overrides it; null: kept nowhere, a restart warms"
        " up from the last hour of history alone); a snapshot saved under other settings, or older than"
        " that hour, is not used",
    )
    state_save_seconds: float = Field(
        300.0,
        ge=1,
        le=MAX_INTERVAL_SECONDS,
        description="how often `anomaly run` saves its state_file (and once more when it stops); a crash"
        " loses what was learnt since, which the warm-up replays from the history",
    )
    # New settings come after the previous release's, so `config show` diffs between releases line up.
    fleet_rearm_ticks: int = Field(
        60,
        ge=1,
        description=(
            "reads a fleet alert's GPU must have been back among its peers, with no other alert open on it,"
            " before the alert resolves (quiet reads in a row) or a new departure raises it again within"
            " fleet_hold_ticks of its raise: a fault begun half an hour after an earlier one's repair is"
            " told, not hidden in the earlier one's hold (eval seeds 1621 and 1649), and a repaired GPU's"
            " incident is not held open 2 hours"
        ),
    )
    band_restore_ticks: int = Field(
        720,
        ge=0,
        le=65534,
        description=(
            "the adaptive detector gives a series back the band it had before a raised fault (pending_ticks"
            " samples past it) once it reads pending_ticks samples in a row within that band, within this"
            " many samples of the fault's start (720: 6 hours at 30 s); 0: never. An SM clock throttled for"
            " an hour kept a band three times as wide for over an hour after its repair, and a second drop"
            " of 250 MHz then was not raised. A change that lasts is learnt as before; off in anomaly score"
        ),
    )

    @field_validator("fleet_load_query")
    @classmethod
    def _load_query_named(cls, value: str | None) -> str | None:
        # '' waited for a query of no name: the load-following metrics were compared as is, without the
        # warning a misspelt name gets (a detector lacking a query it reads)
        if value is not None and not value.strip():
            raise ValueError(
                f"{value!r} names no query; write the load query's name (DCGM_FI_DEV_GPU_UTIL), or null to"
                " compare the fleet's metrics as they are"
            )
        return value

    @field_validator("state_file")
    @classmethod
    def _names_a_file(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or value.endswith(("/", "\\"))):
            raise ValueError(
                f"{value!r} names no file; give a file name (e.g. {DEFAULT_STATE_FILE}), or null for none"
            )
        return value

    def adaptive_scores(self, query: AnomalyQueryConfig | str) -> bool:
        """Whether the adaptive detector scores a query: its own ``adaptive``, else whether its name matches
        ``adaptive_metrics``."""
        name = query if isinstance(query, str) else query.name
        chosen = next((q.adaptive for q in self.queries if q.name == name), None)
        if chosen is not None:
            return chosen
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.adaptive_metrics)

    @property
    def read_deadline_seconds(self) -> float:
        """The most one source read waits for all its queries (read concurrently): a query timeout, and
        under a tick, so a slow Prometheus never holds a tick past the next one."""
        return min(self.query_timeout_seconds, 0.8 * self.infer_every_seconds)


def check_anomaly_queries(cfg: AnomalyConfig) -> list[ConfigError]:
    """What ``anomaly run`` would mishandle, a problem each: a name given twice (one of the two was silently
    dropped), an empty or unbalanced expr, a broken regex. No query at all is not one: every command loads
    this file, and only ``anomaly run`` needs queries; it refuses to start without them, and ``config
    validate`` says so in its words (``anomaly_run_refusal``), whatever ``source`` says. Refused here, it
    stopped ``serve`` and the exporter on a file whose ``anomaly`` section wrote ``source: prometheus``
    and no query, which the previous release (210aa39) ran them with."""
    problems = []
    first: dict[str, int] = {}
    for k, query in enumerate(cfg.queries):
        if not query.name.strip():
            problems.append(
                ConfigError(
                    "is empty; name the query after the metric it reads", field=f"anomaly.queries[{k}].name"
                )
            )
        elif query.name in first:
            problems.append(
                ConfigError(
                    f"{query.name!r} is also the name of anomaly.queries[{first[query.name]}]; give each"
                    " query its own (detectors find queries by name, so one of the two would be dropped)",
                    field=f"anomaly.queries[{k}].name",
                )
            )
        else:
            first[query.name] = k
        where = f"anomaly.queries[{k}].expr"
        problem = promql_bracket_problem(query.expr) or promql_regex_problem(query.expr)
        if not query.expr.strip():
            problem = f"is empty; give query {query.name!r} a PromQL expression"
            problems.append(ConfigError(problem, field=where))
        elif problem is not None:
            problems.append(ConfigError(f"query {query.name!r}: {problem} in {query.expr!r}", field=where))
        elif query.guard and range_shape(query.expr) is None:
            problems.append(
                ConfigError(GUARD_UNREAD.format(name=query.name), field=f"anomaly.queries[{k}].guard")
            )
    return problems
