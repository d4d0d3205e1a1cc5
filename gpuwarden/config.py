"""Configuration: one YAML file plus ``GPUWARDEN_`` environment overrides, validated once at start.

Each stage receives its typed section (the ``anomaly`` one lives in ``gpuwarden.config_anomaly``, the
``alerting`` one in ``gpuwarden.config_alerting``; both are importable from here too). Secrets
are references in YAML (``{env: SLACK_BOT_TOKEN}``) and become ``SecretStr``. Files are read with
``gpuwarden.yamlfile``, so errors name the file, line and field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from gpuwarden.allowed_hosts import allowed_host_entry
from gpuwarden.config_alerting import (
    AlertingConfig,
    InhibitRuleConfig,
    KubernetesInventoryConfig,
    MaintenanceWindowConfig,
)
from gpuwarden.config_anomaly import AnomalyConfig, check_anomaly_queries
from gpuwarden.config_notify import WebhookConfig, check_webhook_names
from gpuwarden.config_problems import ConfigReport, miscased_sections, validated
from gpuwarden.config_rules import (
    HttpUrl,
    Section,
    ShownUrl,
    SimulateSpec,
    StoreUrl,
    Token,
    repeated_entries,
    sim_fleet_nodes,
)
from gpuwarden.config_slack import SlackConfig
from gpuwarden.config_source import (
    ENVIRONMENT,
    PREFIX,
    Loc,
    check_variable_names,
    field_loc,
    literal_secrets,
    located,
    setting_variable,
    settings_error,
)
from gpuwarden.errors import ConfigError
from gpuwarden.headers import HEADER_TIMEOUT_SECONDS
from gpuwarden.limits import (
    MAX_BODY_BYTES,
    MAX_GPUS_PER_NODE,
    MAX_INTERVAL_SECONDS,
    MIN_COLLECT_INTERVAL_SECONDS,
)
from gpuwarden.route_prefix import route_prefix_entry
from gpuwarden.secret_refs import resolve_secret_refs, secret_ref_names
from gpuwarden.urls import pushgateway_base_url
from gpuwarden.yamlfile import not_a_mapping, read_yaml

# What the stages, the CLI, the tests and users import from here, wherever it is defined.
__all__ = [
    "AlertingConfig",
    "AnomalyConfig",
    "ApiConfig",
    "ExporterConfig",
    "GpuwardenConfig",
    "InhibitRuleConfig",
    "KubernetesInventoryConfig",
    "MaintenanceWindowConfig",
    "SimConfig",
    "SlackConfig",
    "StoreConfig",
    "TracingConfig",
    "examine_config",
    "load_config",
]


_SIM_GPU = re.compile(r"node-\d{2,}:\d+")  # the simulated fleet's node names (``node-01``) and a GPU index


class SimConfig(Section):
    """The simulated fleet."""

    seed: int = 0
    clusters: int = Field(1, ge=1)
    racks_per_cluster: int = Field(1, ge=1)
    nodes_per_rack: int = Field(2, ge=1)
    gpus_per_node: int = Field(8, ge=1, le=MAX_GPUS_PER_NODE)
    gpu_model: str = "NVIDIA H100 80GB HBM3"
    # GPUs the simulated exporter runs in MIG mode, each ``node-NN:INDEX`` (``node-01:7``), split into its
    # MIG instances: MIG series, their pods and the anomaly service's MIG handling, tried without a MIG GPU.
    mig_gpus: list[str] = Field(default_factory=list)

    @field_validator("mig_gpus")
    @classmethod
    def _mig_gpus_named(cls, value: list[str]) -> list[str]:
        for item in value:
            if _SIM_GPU.fullmatch(item) is None:
                raise ValueError(f"{item!r}: write each GPU as node-NN:INDEX, such as node-01:7")
        return value

    @model_validator(mode="after")
    def _fleet_size(self) -> SimConfig:
        sim_fleet_nodes(self.nodes)
        return self

    @property
    def nodes(self) -> int:
        """The fleet's nodes: ``clusters`` x ``racks_per_cluster`` x ``nodes_per_rack``."""
        return self.clusters * self.racks_per_cluster * self.nodes_per_rack


class ExporterConfig(Section):
    """The NVML/DCGM-compatible exporter."""

    listen_address: str = "0.0.0.0"  # noqa: S104 - a DaemonSet exporter listens on the node's address
    port: int = Field(9400, ge=1, le=65535)
    collect_interval_seconds: float = Field(5.0, ge=MIN_COLLECT_INTERVAL_SECONDS, le=MAX_INTERVAL_SECONDS)
    nvml_call_timeout_seconds: float = Field(
        2.0,
        gt=0,
        le=MAX_INTERVAL_SECONDS,
        description="a collection still running after this long is reported stale (a hung call)",
    )
    kubelet_pod_resources_socket: str | None = None
    proc_root: str = Field("/proc", description="where /proc/<pid>/cgroup is read for pod/job attribution")
    hostname: str | None = Field(None, description="the Hostname label; default: NODE_NAME or the host name")
    simulate: SimulateSpec = Field(None, description="NODESxGPUS, e.g. 2x8; None means real NVML")


class ApiConfig(Section):
    """The HTTP API of ``gpuwarden serve``."""

    listen_address: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    token: Token = None
    db: StoreUrl = "gpuwarden.db"
    max_body_bytes: int = Field(1_048_576, gt=0, le=MAX_BODY_BYTES)
    body_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, description="a request body not all there this long after the request: 408"
    )
    header_timeout_seconds: float = Field(
        HEADER_TIMEOUT_SECONDS,
        gt=0,
        le=3600,
        description="a request line and headers not all there this long after the connection opened (or the"
        " request's first byte): the connection is closed, with a 408 if part of a request came",
    )
    keep_alive_seconds: int = Field(
        5, ge=1, le=3600, description="an idle keep-alive connection is closed after this long"
    )
    max_connections: int = Field(
        800,
        ge=1,
        le=1_000_000,
        description="connections and requests in progress past which a new request is answered 503 (keep it "
        "under the process's open-file limit, 1024 by default, so /healthz still gets a socket)",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="the names serve is reached by (host names or addresses, no port): a request whose Host"
        " header names another is answered 400, against DNS rebinding; empty (the default): any Host",
    )
    route_prefix: str = Field(
        "",
        description="the path every route is served under (/gpuwarden: /gpuwarden/api/v2/alerts,"
        " /gpuwarden/-/ready), for a proxy forwarding it unstripped; empty (the default): the root",
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _allowed_hosts_are_names(cls, value: list[str]) -> list[str]:
        return [allowed_host_entry(item) for item in value]

    @field_validator("route_prefix")
    @classmethod
    def _route_prefix_is_a_path(cls, value: str) -> str:
        return route_prefix_entry(value)


class StoreConfig(Section):
    """Connections to the incident store (``api.db``) when it is a PostgreSQL server."""

    connect_timeout_seconds: int = Field(
        10,
        ge=2,
        le=3600,
        description="a connect to the store (and to its lock connection) that gets no answer this long fails,"
        " whole seconds, at least 2 (libpq's minimum); unset, psycopg waited about 130 s for a host that"
        " does not answer, and the applier or the API request with it",
    )


class TracingConfig(Section):
    """OpenTelemetry tracing for inference and training."""

    enabled: bool = True
    service_name: str = Field("gpuwarden-inference", min_length=1)
    pod_name: str = Field("", description="k8s.pod.name resource attribute; empty leaves it out")
    span_exporter: Literal["auto", "otlp", "console", "none"] = Field(
        "auto", description="auto: OTLP/HTTP when otlp_endpoint is set, console otherwise"
    )
    otlp_endpoint: HttpUrl | None = Field(None, description="OTLP/HTTP URL, e.g. http://otel:4318/v1/traces")
    otlp_timeout_seconds: float = Field(10.0, gt=0, le=MAX_INTERVAL_SECONDS)
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0, description="share of traces exported; metrics see all")
    model_name: str = Field("gpuwarden-toy-1", min_length=1, description="model the toy server serves")
    token_seconds: float = Field(
        0.005, gt=0, le=MAX_INTERVAL_SECONDS, description="toy server time per output token on a healthy GPU"
    )
    pushgateway_url: ShownUrl | None = Field(None, description="training metrics go here when set")
    push_interval_seconds: float = Field(5.0, gt=0, le=MAX_INTERVAL_SECONDS)

    @field_validator("pushgateway_url")
    @classmethod
    def _pushgateway_url_is_a_base_url(cls, value: str | None) -> str | None:
        if value is not None:
            pushgateway_base_url(
                value
            )  # the exporter's own check, so `config validate` refuses what it would
        return value


_SET_ASIDE: ContextVar[frozenset[str]] = ContextVar("gpuwarden_config_set_aside", default=frozenset())
"""``GPUWARDEN_`` variables (upper case) the settings source does not read: found wrong while the file's own
problems are sought (``examine_config``)."""


class GpuwardenConfig(BaseSettings):
    """The whole configuration. Environment variables ``GPUWARDEN_<SECTION>__<FIELD>`` override YAML."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        nested_model_default_partial_update=True,
    )

    sim: SimConfig = Field(default_factory=SimConfig)
    exporter: ExporterConfig = Field(default_factory=ExporterConfig)
    slack: SlackConfig = Field(default_factory=SlackConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    anomaly: AnomalyConfig = Field(default_factory=AnomalyConfig)
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    webhooks: list[WebhookConfig] = Field(
        default_factory=list, description="generic outgoing webhooks (gpuwarden.config_notify)"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment beats the YAML file (passed as init values); no dotenv or secret dirs. A variable set
        aside (``_SET_ASIDE``: found wrong, while the file's problems are sought) is not read."""
        aside = _SET_ASIDE.get()
        if aside and isinstance(env_settings, EnvSettingsSource):
            env_settings.env_vars = {k: v for k, v in env_settings.env_vars.items() if k.upper() not in aside}
        return (env_settings, init_settings)

    _file: str = PrivateAttr(default=ENVIRONMENT)
    _positions: dict[Loc, int] = PrivateAttr(default_factory=dict)

    def locate(self, error: ConfigError) -> ConfigError:
        """An error about a setting (``error.field``), found after loading, naming the file and line the
        setting came from, or the ``GPUWARDEN_`` variable that set it."""
        loc = field_loc(error.field)
        if not loc or loc[0] not in type(self).model_fields:  # not a setting: a command-line option
            return error
        return located(error, loc, self._file, self._positions, os.environ)

    def written_in_file(self, field: str) -> bool:
        """Whether the setting ``field`` (``webhooks[0].url``) is written into the file as it is: not given as
        an ``{env: NAME}`` reference, nor set by a ``GPUWARDEN_`` variable, nor a default."""
        loc = field_loc(field)
        if loc not in self._positions or (*loc, "env") in self._positions:
            return False
        return setting_variable(loc, self._positions, os.environ) is None


def _unset_secrets(value: Any, environ: Mapping[str, str]) -> bool:
    """Whether ``value`` holds an ``{env: NAME}`` secret whose variable is unset or blank."""
    return any(not environ.get(name, "").strip() for name in secret_ref_names(value))


_SECTIONS: dict[str, type[BaseModel]] = {
    name: info.annotation
    for name, info in GpuwardenConfig.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
}
_LISTS: dict[str, type[BaseModel]] = {"webhooks": WebhookConfig}
"""Top-level settings that are lists of items, each item a model."""


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    secrets_for: Collection[str] | None = None,
) -> GpuwardenConfig:
    """Load the YAML file (if any) and apply ``GPUWARDEN_`` environment overrides; a ``ConfigError`` names
    every problem found (``examine_config``), the first in the file first.

    ``secrets_for``: the top-level settings a command reads (the exporter: ``exporter``, ``sim``,
    ``tracing``). Another setting whose ``{env: NAME}`` secret is unset or empty is left out (its default
    applies), so that one file serves every command without handing Slack's token to every GPU node;
    ``None`` (``serve``, ``config validate``) requires every secret."""
    report = examine_config(path, environ, secrets_for=secrets_for)
    error = report.error()
    if error is not None:
        raise error
    assert report.cfg is not None  # no problem: it was built
    return report.cfg


def examine_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    secrets_for: Collection[str] | None = None,
) -> ConfigReport[GpuwardenConfig]:
    """Load as ``load_config`` does, collecting every problem rather than raising the first: literal
    secrets, unset secret variables, every invalid value, the cross-field checks these hid, duplicate names
    and unbalanced queries. Only a file that cannot be read or parsed raises ``ConfigError``."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    positions: dict[Loc, int] = {}
    where = str(path) if path is not None else ENVIRONMENT
    referenced: set[str] = set()  # variables the file reads as secrets: not meant for a setting
    problems: list[ConfigError] = []
    unresolved: list[tuple[Loc, ConfigError]] = []
    if path is not None:
        raw, positions = read_yaml(path)
        if raw is not None and not isinstance(raw, dict):
            raise not_a_mapping(raw, where, GpuwardenConfig.model_fields)
        miscased = miscased_sections(raw or {}, GpuwardenConfig.model_fields, where, positions)
        if miscased:  # refused, and left out: their own problems show once the name is right
            problems.extend(miscased)
            raw = {k: v for k, v in (raw or {}).items() if k not in {p.field for p in miscased}}
        problems.extend(literal_secrets(raw or {}, where, positions, _SECTIONS, _LISTS))
        referenced = secret_ref_names(raw)
        if secrets_for is not None and raw:
            raw = {k: v for k, v in raw.items() if k in secrets_for or not _unset_secrets(v, env)}
        # A reference to a variable that is unset or empty: at its line.
        data = resolve_secret_refs(raw or {}, env, where, unresolved=unresolved)
        problems.extend(located(exc, loc, where, positions, {}) for loc, exc in unresolved)
    try:  # the environment pydantic-settings reads
        check_variable_names(os.environ, _SECTIONS, _LISTS, referenced)
    except ConfigError as exc:
        problems.append(exc)
    aside: set[str] = set()

    def build(values: dict[str, Any]) -> GpuwardenConfig:
        token = _SET_ASIDE.set(frozenset(aside))
        try:
            return GpuwardenConfig(**values)
        finally:
            _SET_ASIDE.reset(token)

    def set_aside(name: str) -> bool:
        new = name.upper() not in aside
        aside.add(name.upper())
        return new

    try:  # each problem at its line, or naming the variable that set it
        cfg, found, doubtful = validated(
            build,
            data,
            where,
            positions,
            os.environ,
            left_out=[loc for loc, _ in unresolved],
            model=GpuwardenConfig,
            set_aside=set_aside,
        )
    except SettingsError as exc:  # a GPUWARDEN_ variable of a section or list that is not valid JSON
        return ConfigReport[GpuwardenConfig](None, [*problems, settings_error(exc, os.environ)], set())
    report = ConfigReport(cfg, [*problems, *found], doubtful)
    if cfg is not None:
        cfg._file, cfg._positions = where, positions
        report.add(check_webhook_names(cfg.webhooks))
        report.add(check_anomaly_queries(cfg.anomaly))
        report.add(_repeated_list_entries(cfg))
    return report


_NAME_LISTS = (
    "adaptive_metrics",
    "level_shift_queries",
    "fleet_queries",
    "multivariate_queries",
    "fleet_peer_labels",
    "fleet_load_adjusted",
    "thermal_peer_labels",
    "presence_queries",
)
"""The ``anomaly`` settings that list query, metric or label names (``config_anomaly.Name``)."""


def _repeated_list_entries(cfg: GpuwardenConfig) -> list[ConfigError]:
    """A problem per entry given twice in a list setting that names each thing once: two ``adaptive`` in
    ``anomaly.detectors`` ran two adaptive detectors on every series; the others (an inhibition rule's
    ``equal``, ``kubernetes_inventory.rack_labels`` too) were taken silently."""
    once = "list each once"
    problems = repeated_entries(
        "anomaly.detectors", cfg.anomaly.detectors, f"{once} (each entry runs a detector: it would run twice)"
    )
    for name in _NAME_LISTS:
        problems += repeated_entries(f"anomaly.{name}", getattr(cfg.anomaly, name), once)
    problems += repeated_entries("sim.mig_gpus", cfg.sim.mig_gpus, once)
    for k, hook in enumerate(cfg.webhooks):
        problems += repeated_entries(f"webhooks[{k}].events", hook.events, once)
        problems += repeated_entries(f"webhooks[{k}].priorities", hook.priorities, once)
    for k, rule in enumerate(cfg.alerting.inhibit_rules):
        problems += repeated_entries(f"alerting.inhibit_rules[{k}].equal", rule.equal, once)
    if cfg.alerting.kubernetes_inventory is not None:
        rack_labels = cfg.alerting.kubernetes_inventory.rack_labels
        problems += repeated_entries("alerting.kubernetes_inventory.rack_labels", rack_labels, once)
    return problems
