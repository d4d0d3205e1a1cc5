"""Checks of settings that the configuration model cannot make alone: they need a stage (matchers, detector
names), the machine (addresses, directories) or a library (a kubeconfig).

``config validate`` runs ``check_config``: what ``serve``, ``exporter`` and ``anomaly run`` would refuse
later, and ``check_starts``: what stops one of them at its start (no API token, no query to score). It
cannot know which of the three a file is for, and exit 0 promises all three start with it, so each of
these names the command it stops. ``serve`` runs ``check_serve`` before it makes any file, so a wrong
setting leaves no store, lock or journal behind (and migrates no existing store); ``anomaly run`` runs
those of ``anomaly_checks``. Each check is one function that the command and ``config validate`` both
call, so both say the same line (tests/gpuwarden/cli/test_startup_parity.py). The checks of the simulated
fleet are in ``sim_checks``, those of what this machine offers (an address, a store, a journal) in
``machine_checks``, the warnings about serve's alerting and notification settings in ``alerting_checks``;
here are the others, and the lists each command runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING

from gpuwarden.cli.alerting_checks import (
    check_maintenance_windows,
    check_slack_base_url,
    check_slack_channel,
    check_slack_token,
    check_webhook_url_tokens,
    check_webhooks,
)
from gpuwarden.cli.anomaly_checks import (
    anomaly_run_refusals,
    anomaly_run_warnings,
    check_detectors,
)
from gpuwarden.cli.machine_checks import (
    check_journal_dir,
    check_listen_address,
    check_store,
    check_store_directory,
    listen_socket,
    refused_setting,
    sqlite_path,
    store_directory_unwritable,
)
from gpuwarden.cli.sim_checks import (
    SIM_FLEET_READS,
    check_sim_inventory,
    check_sim_section,
    mig_gpus,
    simulated_fleet,
)
from gpuwarden.cli.tls_trust import ca_file_refusal
from gpuwarden.errors import ConfigError
from gpuwarden.headers import TOKEN_ENV, token_problem

if TYPE_CHECKING:
    from gpuwarden.config import GpuwardenConfig

# What was defined here before the split, importable from here still, wherever it is defined now.
__all__ = [
    "SERVE_SECTIONS",
    "SIM_FLEET_READS",
    "check_config",
    "check_journal_dir",
    "check_journal_kept",
    "check_listen_address",
    "check_maintenance_windows",
    "check_serve",
    "check_sim_inventory",
    "check_sim_section",
    "check_slack_base_url",
    "check_slack_channel",
    "check_starts",
    "check_store",
    "check_store_directory",
    "check_store_journal",
    "check_webhooks",
    "journal_field",
    "listen_socket",
    "refused_setting",
    "serve_token_refusal",
    "simulated_fleet",
    "sqlite_path",
]


def check_config(cfg: GpuwardenConfig) -> tuple[list[ConfigError], list[ConfigError]]:
    """Everything ``config validate`` checks beyond the model: the problems, each naming its field, and
    what deserves a warning only (``check_maintenance_windows``)."""
    from gpuwarden.cli.inventories import inventory_file, kubernetes_inventory  # noqa: PLC0415
    from gpuwarden.clock import SystemClock  # noqa: PLC0415

    problems: list[ConfigError] = []
    check = partial(_keep_problem, problems)
    warnings = _alerting_checks(cfg, check)
    check(lambda: check_detectors(cfg.anomaly))
    if "anomaly" in cfg.model_fields_set:  # a file for anomaly run, as check_starts has it; whatever source
        warnings.extend(anomaly_run_warnings(cfg.anomaly))
    for field, host in (
        ("api.listen_address", cfg.api.listen_address),
        ("exporter.listen_address", cfg.exporter.listen_address),
        ("anomaly.listen_address", cfg.anomaly.listen_address),
    ):
        check(partial(check_listen_address, host, field))
    check(lambda: check_store(cfg.api.db, "api.db"))
    check(lambda: check_store_directory(cfg.api.db, "api.db"))
    check(partial(check_store_journal, cfg, cfg.api.db, "api.db"))
    warnings.extend(check_journal_kept(cfg, cfg.api.db))
    if cfg.alerting.inventory_file:
        check(partial(inventory_file, cfg.alerting.inventory_file))
    kube = cfg.alerting.kubernetes_inventory
    if kube is not None and kube.kubeconfig is not None:  # unset: the pod's service account, where serve runs
        # The client is loaded with its context: one set aside would have the kubeconfig's current one.
        reads = ("alerting.kubernetes_inventory.context",)
        check(partial(_reading, reads, lambda: kubernetes_inventory(kube, SystemClock()).close()))
    if cfg.exporter.simulate:
        check(partial(check_sim_section, cfg, cfg.exporter.simulate, "exporter.simulate"))
        check(partial(mig_gpus, cfg, cfg.exporter.simulate, "exporter.simulate"))
    return problems, warnings


SERVE_SECTIONS = frozenset({"api", "alerting", "slack", "store", "webhooks"})  # a file written for serve


def check_starts(cfg: GpuwardenConfig, environ: Mapping[str, str]) -> list[ConfigError]:
    """What would stop ``serve`` or ``anomaly run`` at its start, each naming the command: no API token in
    the file or in ``environ`` (``config validate`` runs with the variables serve gets), no query to score,
    ``anomaly.source: in-process`` written in the file, ``anomaly.alert_url`` without a token to send. Each
    only for a file (or variables) that write a section of that command: a file for the exporter alone (a
    GPU node's) has neither a token nor queries, and needs neither. Each in the words the command says."""
    refusals = []
    written = cfg.model_fields_set
    refusal = serve_token_refusal(cfg.api.token is not None, environ)
    if refusal is not None and written & SERVE_SECTIONS:
        if refusal.field == "api.token":  # CI runs validate without serve's variables: say so
            refusal = ConfigError(
                f"{refusal.message}; run config validate with the variables serve gets", field=refusal.field
            )
        refusals.append(refusal)
    if "anomaly" in written:
        source_written = "source" in cfg.anomaly.model_fields_set
        refusals.extend(anomaly_run_refusals(cfg.anomaly, environ, source_written=source_written))
    unloadable = serve_ca_file_refusal(cfg, environ)
    if unloadable is not None and written & SERVE_SECTIONS and unloadable not in refusals:
        refusals.append(unloadable)
    return refusals


def serve_ca_file_refusal(cfg: GpuwardenConfig, environ: Mapping[str, str]) -> ConfigError | None:
    """Why ``serve`` cannot start with the ``SSL_CERT_FILE`` of ``environ``: the clients of its webhooks and
    of Slack's charts (``slack.chart_prometheus_url``) load it as they are built."""
    slack = cfg.slack
    charts = slack.bot_token is not None and slack.charts and slack.chart_prometheus_url is not None
    return ca_file_refusal(environ, "serve") if cfg.webhooks or charts else None


def serve_token_refusal(api_token_set: bool, environ: Mapping[str, str]) -> ConfigError | None:
    """Why ``serve`` refuses to start with the write token it has, or None: a ``GPUWARDEN_API_TOKEN`` no
    client can send (an empty one would let every request write), or no token at all (``api_token_set``:
    the file's ``api.token``)."""
    token = environ.get(TOKEN_ENV)
    problem = None if token is None else token_problem(token)
    if problem is not None:
        return ConfigError(
            f"{problem}; serve refuses to start with it (or unset it to use api.token)", field=TOKEN_ENV
        )
    if not token and not api_token_set:
        return ConfigError(
            f"serve refuses to start without an API token: set api.token ({{env: NAME}}) or export"
            f" {TOKEN_ENV} (writes need a bearer token)",
            field="api.token",
        )
    return None


def check_serve(
    cfg: GpuwardenConfig, db: str, db_field: str, host: str, host_field: str
) -> tuple[list[ConfigError], list[ConfigError]]:
    """What ``serve`` checks before it makes any file (its inventories are checked next, by
    ``prepare_inventories``): every problem, each naming the setting or option, as ``config validate``
    lists them, and what deserves a warning only."""
    problems: list[ConfigError] = []
    check = partial(_keep_problem, problems)
    warnings = _alerting_checks(cfg, check)
    check(partial(check_listen_address, host, host_field))
    check(partial(check_store, db, db_field))
    # As config validate: a missing directory was said only once the store failed to open (after the other
    # problems were listed without it), in other words than validate's.
    check(partial(check_store_directory, db, db_field))
    check(partial(check_store_journal, cfg, db, db_field))
    warnings.extend(check_journal_kept(cfg, db))
    return problems, warnings


def _reading(reads: tuple[str, ...], run: Callable[[], object]) -> None:
    """Run one check whose problem depends on the settings ``reads`` too: ``ConfigReport`` leaves it out
    when one of them was set aside for a problem of its own (its default, not the file's value, was read)."""
    try:
        run()
    except ConfigError as exc:
        raise exc.reading(reads) from exc


def _keep_problem(problems: list[ConfigError], run: Callable[[], object]) -> None:
    """Run one check, keeping the problem it raises: every one is checked, whatever the others say."""
    try:
        run()
    except ConfigError as exc:  # each problem it carries (an inventory file's), not the first "(and 2 more)"
        problems.extend((exc.alone(), *exc.more))


def _alerting_checks(
    cfg: GpuwardenConfig, check: Callable[[Callable[[], object]], object]
) -> list[ConfigError]:
    """The checks of ``serve``'s alerting settings that ``config validate`` makes too, each run through
    ``check`` (which keeps every problem): the matchers parse
    and none mutes everything, the maintenance windows, the webhooks, the simulated inventory. Returns the
    warnings."""
    from alerting.silences import configured_mutes  # noqa: PLC0415 - config validate starts light
    from gpuwarden.clock import SystemClock  # noqa: PLC0415

    warnings: list[ConfigError] = []
    check(lambda: configured_mutes(cfg.alerting))
    check(lambda: warnings.extend(check_maintenance_windows(cfg.alerting, SystemClock().now())))
    warnings.extend(check_webhooks(cfg.webhooks))
    warnings.extend(check_webhook_url_tokens(cfg))
    warnings.extend(check_slack_base_url(cfg))
    warnings.extend(check_slack_token(cfg))
    warnings.extend(check_slack_channel(cfg))
    warnings.extend(check_sim_inventory(cfg))
    return warnings


def check_journal_kept(cfg: GpuwardenConfig, db: str) -> list[ConfigError]:
    """A warning when a database server's store (PostgreSQL) has no ``alerting.journal_dir``: its journal
    is then ``gpuwarden-journal`` under serve's working directory, and alerts acknowledged but not yet
    applied live there: a directory that is not kept (a container's) loses them."""
    if cfg.alerting.journal_dir or sqlite_path(db) is not None:
        return []
    return [
        ConfigError(
            "not set, so the journal of a database server's store is gpuwarden-journal under serve's working"
            " directory, where acknowledged alerts wait until applied; set alerting.journal_dir to a"
            " directory that outlives the process for a PostgreSQL store",
            field="alerting.journal_dir",
        )
    ]


def journal_field(cfg: GpuwardenConfig, db_field: str) -> str:
    """What to blame for the journal directory: ``alerting.journal_dir`` when set, else the store (``--db``
    or ``api.db``), beside whose SQLite file the journal goes."""
    return "alerting.journal_dir" if cfg.alerting.journal_dir else db_field


def check_store_journal(cfg: GpuwardenConfig, db: str, db_field: str) -> None:
    """``check_journal_dir`` of the journal serve keeps for the store ``db``: ``alerting.journal_dir``, else
    beside a SQLite file. A problem said at ``db_field`` read ``alerting.journal_dir`` (unset, or set aside
    for a problem of its own: then the file puts the journal elsewhere, and it is not told)."""
    from gpuwarden.cli.serve_journal import journal_dir  # noqa: PLC0415 - serve's own rule for where it is

    if not cfg.alerting.journal_dir and store_directory_unwritable(db) is not None:
        return  # the journal is beside the store: check_store_directory says why neither can be made
    check = partial(check_journal_dir, journal_dir(cfg, db), journal_field(cfg, db_field))
    _reading(("alerting.journal_dir",), check)
