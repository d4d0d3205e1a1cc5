"""Checks of settings that the configuration model cannot make alone: they need a stage (matchers, detector
names), the machine (addresses, directories) or a library (a kubeconfig).

``config validate`` runs ``check_config``: what ``serve``, ``exporter`` and ``anomaly run`` would refuse
later, and ``check_starts``: what stops one of them at its start (no API token, no query to score). It
cannot know which of the three a file is for, and exit 0 promises all three start with it, so each of
these names the command it stops. ``serve`` runs ``check_serve`` before it makes any file, so a wrong
setting leaves no store, lock or journal behind (and migrates no existing store); ``anomaly run`` runs
those of ``anomaly_checks``. Each check is one function that the command and ``config validate`` both
call, so both say the same line (tests/gpuwarden/cli/test_startup_parity.py).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

from gpuwarden.cli.anomaly_checks import (
    anomaly_run_refusals,
    anomaly_run_warnings,
    check_detectors,
)
from gpuwarden.cli.conninfo import libpq_string_problem, password_at_problem
from gpuwarden.cli.consoles import option_said
from gpuwarden.clock import shown
from gpuwarden.errors import ConfigError
from gpuwarden.headers import TOKEN_ENV

if TYPE_CHECKING:
    from gpuwarden.config import AlertingConfig, GpuwardenConfig, SimConfig
    from gpuwarden.config_notify import WebhookConfig


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
    return refusals


def serve_token_refusal(api_token_set: bool, environ: Mapping[str, str]) -> ConfigError | None:
    """Why ``serve`` refuses to start with the write token it has, or None: a ``GPUWARDEN_API_TOKEN`` no
    client can send (an empty one would let every request write), or no token at all (``api_token_set``:
    the file's ``api.token``)."""
    from gpuwarden.config_rules import token_problem  # noqa: PLC0415 - see check_maintenance_windows

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


_SHAPE = ("clusters", "racks_per_cluster", "nodes_per_rack", "gpus_per_node")
SIM_FLEET_READS = (*(f"sim.{name}" for name in _SHAPE), "exporter.simulate", "alerting.sim_inventory")
"""What the simulated-inventory checks read: one of them at fault holds its default, not the file's value."""


def _sim_size_written(full: GpuwardenConfig) -> list[str]:
    """The fleet-size settings the ``sim:`` section sets (in the file or a variable)."""
    if "sim" not in full.model_fields_set:
        return []
    return [name for name in _SHAPE if name in full.sim.model_fields_set]


def simulated_fleet(full: GpuwardenConfig) -> SimConfig:
    """The simulated fleet ``serve``'s ``alerting.sim_inventory`` stands for: the ``sim:`` section's when it
    sets the fleet's size, else the ``exporter.simulate`` of the same file (one cluster, one rack, as the
    exporter builds it), so that both read one setting; else the section's default (two nodes of 8 GPUs).
    The seed and GPU model are the section's either way, as the exporter takes them."""
    if _sim_size_written(full) or full.exporter.simulate is None:
        return full.sim
    from gpuwarden.sim import parse_simulate_spec  # noqa: PLC0415

    nodes, gpus = parse_simulate_spec(full.exporter.simulate)
    shape = {"clusters": 1, "racks_per_cluster": 1, "nodes_per_rack": nodes, "gpus_per_node": gpus}
    return full.sim.model_copy(update=shape)


def check_sim_section(full: GpuwardenConfig, spec: str, flag: str) -> None:
    """``ConfigError`` when ``spec`` serves another fleet than the one serve's ``alerting.sim_inventory``
    takes from the same configuration (``simulated_fleet``): serve would assess alerts from nodes and GPUs
    it does not know. Checked when the ``sim:`` section sets the fleet's size, or ``sim_inventory`` is on;
    a section that sets only ``seed`` (or ``gpu_model``) is the documented use."""
    from gpuwarden.sim import parse_simulate_spec  # noqa: PLC0415

    given = _sim_size_written(full)
    if not given and not full.alerting.sim_inventory:
        return
    sim = simulated_fleet(full)
    nodes, gpus = parse_simulate_spec(spec)
    sim_nodes = sim.nodes
    if (nodes, gpus) == (sim_nodes, sim.gpus_per_node):
        return
    if not given:  # the fleet of exporter.simulate, or the section's default
        written = full.exporter.simulate
        assumed = f"exporter.simulate {written} of this file" if written else "the default simulated fleet"
        raise ConfigError(
            f"alerting.sim_inventory is on, and serve assumes {assumed}, {sim_nodes} nodes of"
            f" {sim.gpus_per_node} GPUs, but {flag} {spec} serves {nodes} nodes of {gpus} GPUs; write"
            f" exporter.simulate: {spec} in this file (serve and the exporter both read it) and start the"
            " exporter with it and no --simulate",
            field="exporter.simulate" if written else "alerting.sim_inventory",
            reads=SIM_FLEET_READS,
        )
    field = (
        "sim.gpus_per_node" if gpus != sim.gpus_per_node and "gpus_per_node" in given else f"sim.{given[0]}"
    )
    split = "clusters: 1, racks_per_cluster: 1, " if {"clusters", "racks_per_cluster"} & set(given) else ""
    raise ConfigError(
        f"{sim_nodes} nodes of {sim.gpus_per_node} GPUs (clusters {sim.clusters} x racks_per_cluster"
        f" {sim.racks_per_cluster} x nodes_per_rack {sim.nodes_per_rack}), the fleet serve's"
        f" alerting.sim_inventory assumes, but {flag} {spec} serves {nodes} nodes of {gpus} GPUs; make them"
        f" agree: {flag} {sim_nodes}x{sim.gpus_per_node}, or sim: {{{split}nodes_per_rack: {nodes},"
        f" gpus_per_node: {gpus}}} (one cluster and one rack, as {flag} builds it)",
        field=field,
        reads=SIM_FLEET_READS,
    )


def check_sim_inventory(full: GpuwardenConfig) -> list[ConfigError]:
    """A warning when ``alerting.sim_inventory`` is on and nothing in the configuration says the fleet's
    size: serve then assumes the default fleet, whatever ``exporter --simulate`` serves elsewhere."""
    if not full.alerting.sim_inventory or _sim_size_written(full) or full.exporter.simulate:
        return []
    sim = full.sim
    return [
        ConfigError(
            f"serve takes the default simulated fleet as its inventory ({sim.nodes} nodes of"
            f" {sim.gpus_per_node} GPUs): alerts from an exporter simulating another size name nodes it does"
            " not know; write the exporter's size as exporter.simulate: NODESxGPUS in this file (serve and"
            " the exporter both read it) and start the exporter with it and no --simulate",
            field="alerting.sim_inventory",
            reads=SIM_FLEET_READS,
        )
    ]


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
    warnings.extend(check_slack_base_url(cfg))
    warnings.extend(check_slack_channel(cfg))
    warnings.extend(check_sim_inventory(cfg))
    return warnings


def check_slack_channel(cfg: GpuwardenConfig) -> list[ConfigError]:
    """A warning when Slack is configured with a channel name, not an id: Slack answers a post with the
    channel's id, so the outbox cannot tell a posted message from one it never sent after a crash."""
    channel = cfg.slack.channel
    if cfg.slack.bot_token is None or (channel.startswith(("C", "G")) and channel[1:].isalnum()):
        return []
    return [
        ConfigError(
            f"{channel!r} is a name, not an id (C...): after a crash between Slack's answer and the"
            " outbox's record, the incident's message can be posted twice; set the channel id",
            field="slack.channel",
        )
    ]


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


def check_maintenance_windows(cfg: AlertingConfig, now: datetime) -> list[ConfigError]:
    """Configured maintenance windows against the time ``now``.

    One that ends more than ``MAX_WINDOW_SECONDS`` (a year) from now is refused: an end in year 9999 is a
    permanent mute written as planned work, and it would hide its targets' faults for good. One that already
    ended is returned as a warning, not refused: it mutes nothing, and a stale entry in a file must not stop
    ``serve`` from starting again (Alertmanager refuses an ended silence only when one is created through its
    API, which gpuwarden's API does too).
    """
    # Here, not at the top: every command imports this module, and config_rules brings pydantic.
    from gpuwarden.config_rules import DAY, MAX_WINDOW_SECONDS  # noqa: PLC0415

    latest = now + timedelta(seconds=MAX_WINDOW_SECONDS)
    warnings = []
    for k, window in enumerate(cfg.maintenance_windows):
        field = f"alerting.maintenance_windows[{k}].ends_at"
        if window.ends_at > latest:
            raise ConfigError(
                f"{shown(window.ends_at)} is more than {MAX_WINDOW_SECONDS / DAY:g} days from now: a"
                " maintenance window is planned work with an end; give the work's end (at most a year ahead,"
                " as for a silence) and move it if the work moves, or mute for good in the alert rule",
                field=field,
            )
        if window.ends_at <= now:
            warnings.append(
                ConfigError(
                    f"the window ended at {shown(window.ends_at)}, so it mutes nothing; remove it, or give"
                    " the work's new starts_at and ends_at",
                    field=field,
                )
            )
    return warnings


def check_webhooks(webhooks: Sequence[WebhookConfig]) -> list[ConfigError]:
    """Warnings about the ``webhooks``: a bearer token sent over plain HTTP to another machine travels
    readable by anyone on the path (https, or a receiver on this machine, is meant)."""
    found = (
        _over_plain_http(hook.url, "the bearer token", f"webhooks[{k}].url")
        for k, hook in enumerate(webhooks)
        if hook.bearer_token is not None
    )
    return [warning for warning in found if warning is not None]


def check_slack_base_url(cfg: GpuwardenConfig) -> list[ConfigError]:
    """A warning when Slack's bot token would go over plain HTTP to another machine (``slack.base_url``)."""
    if cfg.slack.bot_token is None:
        return []
    warning = _over_plain_http(cfg.slack.base_url, "the bot token", "slack.base_url")
    return [] if warning is None else [warning]


def _over_plain_http(url: str, secret: str, field: str) -> ConfigError | None:
    """The warning for ``secret`` sent to ``url`` when that is plain http to another machine, or None."""
    parts = urlsplit(url)
    if parts.scheme != "http" or _loopback(parts.hostname or ""):
        return None
    return ConfigError(
        f"{secret} goes to {parts.hostname} over plain http, readable on the way; use an https URL",
        field=field,
    )


def _loopback(host: str) -> bool:
    """Whether ``host`` names this machine (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen_address(host: str, field: str) -> None:
    """``host`` is an address or a name this machine can listen on (not ``not an address``, nor the address
    of another machine): one of its addresses takes a bind on port 0, which listens on nothing."""
    advice = "give an IP address of this machine (0.0.0.0: all of them) or its host name"
    subject = "it" if _is_option(field) else repr(host)  # an option says its value before: not twice
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:  # socket.gaierror; UnicodeError: a label IDNA refuses
        reason = getattr(exc, "strerror", None) or exc
        raise refused_setting(field, host, f"cannot listen on {subject}: {reason}; {advice}") from exc
    refused: OSError | None = None
    for family, kind, proto, _, address in found:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.bind((address[0], 0, *address[2:]))
        except OSError as exc:  # EADDRNOTAVAIL: another machine's; EAFNOSUPPORT: IPv6 is off here
            refused = exc
            continue
        return
    if refused is not None:
        if refused.errno == errno.EADDRNOTAVAIL:
            reason = "not an address of this machine"
        else:
            reason = refused.strerror or str(refused)
        raise refused_setting(field, host, f"cannot listen on {subject}: {reason}; {advice}") from refused


def listen_socket(host: str, port: int, host_field: str, port_field: str) -> socket.socket:
    """A socket bound to ``host:port`` as uvicorn binds one (IPv6 when the host has a colon), or a
    ``ConfigError`` naming the setting at fault: the port when it is taken or not allowed, else the host."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, UnicodeError) as exc:
        sock.close()
        number = getattr(exc, "errno", None)
        taken = number in (errno.EADDRINUSE, errno.EACCES)
        hint = "another process listens there; stop it or choose another port" if taken else ""
        reason = getattr(exc, "strerror", None) or exc
        field, value = (port_field, port) if taken else (host_field, host)
        raise refused_setting(
            field, value, f"cannot listen on {host}:{port}: {reason}{f'; {hint}' if hint else ''}"
        ) from exc
    return sock


def refused_setting(field: str, value: object, message: str) -> ConfigError:
    """The error for ``value`` of ``field``: a setting (``api.port``) is named and located as a setting; a
    command-line option as every bad option is said, ``--port 9400: message`` (``option_said``)."""
    if _is_option(field):
        return ConfigError(option_said(field, value, message))
    return ConfigError(message, field=field)


def _is_option(field: str) -> bool:
    """Whether ``field`` is a command-line option (``--host``), not a setting of the file."""
    return field.startswith("-")


def check_store(db: str, field: str) -> None:
    """A SQLite store is a file: an in-memory database would be one per connection, so serve would
    acknowledge writes into its journal and never store them; a directory would get lock files beside it."""
    path = sqlite_path(db)
    if path is None:  # a database server: checked when it is opened, but for a URL it cannot be
        at = password_at_problem(db)
        if at is not None:
            raise ConfigError(at, field=field)
        return
    libpq = libpq_string_problem(db)
    if libpq is not None:
        raise ConfigError(libpq, field=field)
    if path in ("", ":memory:") or "mode=memory" in db:
        raise ConfigError(
            f"{db!r} is an in-memory database: every connection gets an empty one of its own, so nothing"
            " would be stored; give a file path (gpuwarden.db)",
            field=field,
        )
    if _sqlite_uri(db):
        raise ConfigError(
            f"{db!r} opens its file as a SQLite URI (uri=true), which the store lock and the journal do not"
            " read: a serve given the file's path would take a lock of its own and run beside this one; give"
            f" the file's path (sqlite:///{urlsplit(path).path})",
            field=field,
        )
    if _is_dir(path, field):
        raise ConfigError(
            f"{path} is a directory; give a file in it ({Path(path) / 'gpuwarden.db'})", field=field
        )


def _is_dir(path: str, field: str) -> bool:
    """Whether ``path`` is a directory; a path no file can have (a name over the system's limit) is a
    ``ConfigError`` saying so, where ``is_dir`` raised OSError (a traceback)."""
    try:
        return Path(path).is_dir()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot use it: {exc.strerror}", field=field) from exc


def check_store_directory(db: str, field: str) -> None:
    """A SQLite store's directory exists: ``serve`` makes the file, not the directory, and refuses to start
    without it (``config validate`` said ok before)."""
    path = sqlite_path(db)
    if not path or path == ":memory:":
        return
    try:
        directory = Path(os.path.realpath(path)).parent
        exists = directory.is_dir()
    except OSError:  # a path no file can have (a name too long): check_store names why
        return
    if not exists:
        raise ConfigError(
            f"{path}: its directory {directory} does not exist; make it, or give a file in a directory that"
            " exists",
            field=field,
        )


def sqlite_path(db: str) -> str | None:
    """The file of a SQLite store (a path, or ``sqlite[+driver]:///path[?query]``, read as SQLAlchemy reads
    it, so where the store lock is: ``%20`` is a space), "" for ``sqlite://``; None: a server."""
    if "://" not in db:
        return db
    scheme, _, rest = db.partition("://")
    if not scheme.startswith("sqlite"):
        return None
    return unquote(rest.removeprefix("/").partition("?")[0])


def _sqlite_uri(db: str) -> bool:
    """Whether SQLAlchemy hands the SQLite URL ``db`` to SQLite as a URI (``uri=true``, as its ``asbool``)."""
    query = db.partition("?")[2] if "://" in db else ""
    return any(k == "uri" and v.strip().lower() in _TRUE for k, v in parse_qsl(query))


_TRUE = frozenset({"true", "yes", "on", "y", "t", "1"})


def check_store_journal(cfg: GpuwardenConfig, db: str, db_field: str) -> None:
    """``check_journal_dir`` of the journal serve keeps for the store ``db``: ``alerting.journal_dir``, else
    beside a SQLite file. A problem said at ``db_field`` read ``alerting.journal_dir`` (unset, or set aside
    for a problem of its own: then the file puts the journal elsewhere, and it is not told)."""
    from gpuwarden.cli.serve_cmd import journal_dir  # noqa: PLC0415 - serve's own rule for where it is

    check = partial(check_journal_dir, journal_dir(cfg, db), journal_field(cfg, db_field))
    _reading(("alerting.journal_dir",), check)


def check_journal_dir(directory: Path, field: str = "alerting.journal_dir") -> None:
    """The journal directory exists, or can be made, and takes files: a directory is made in it, or in
    the nearest one above it that exists, and removed at once (``/proc/x`` passes every permission test)."""
    existing = directory.absolute()
    try:
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
    except OSError as exc:  # a path no directory can have (a name over the system's limit)
        raise ConfigError(f"{directory}: cannot use it: {exc.strerror}", field=field) from exc
    if not existing.is_dir():
        raise ConfigError(f"{directory}: cannot use it: {existing} is not a directory", field=field)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".gpuwarden-check-", dir=existing))
    except OSError as exc:
        raise ConfigError(
            f"{directory}: cannot use it: cannot make anything in {existing}: {exc.strerror}", field=field
        ) from exc
