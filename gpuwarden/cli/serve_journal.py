"""Where ``serve``'s accept journal lives, and its applier: opened, recovered and explained at start.

Kept apart from ``gpuwarden.cli.serve_cmd`` (the command, its locks and its service): the journal's place is
a rule of its own (``config validate`` checks it too, ``gpuwarden.cli.preflight``), and so are the warnings
about the journals earlier releases kept elsewhere.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from gpuwarden.cli.machine_checks import sqlite_path
from gpuwarden.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from alerting.applier import JournalApplier
    from alerting.engine import IncidentEngine
    from alerting.fencing import LockFence
    from alerting.health import ServiceHealth
    from gpuwarden.config import GpuwardenConfig

# serve's logger: its JSON lines name one logger whichever module of the command writes them.
logger = logging.getLogger("gpuwarden.serve")


def journal_dir(cfg: GpuwardenConfig, db: str) -> Path:
    """Where the accept journal lives: config, else next to a SQLite file, else ./gpuwarden-journal (under
    the working directory: a PostgreSQL setup should set ``alerting.journal_dir``).

    Next to the file a symlink points to, as the store lock is: a store reached as ``alias.db`` and as
    ``incidents.db`` got two journals and two locks, so two active servers ran on one store.
    """
    if cfg.alerting.journal_dir:
        return Path(cfg.alerting.journal_dir)
    given = sqlite_path(db)
    if given:  # "" is an in-memory store (check_store refuses it): no file to be beside
        return Path(f"{os.path.realpath(given)}.journal")
    return Path("gpuwarden-journal")


def build_applier(
    cfg: GpuwardenConfig,
    db: str,
    engine: IncidentEngine,
    health: ServiceHealth | None = None,
    fence: LockFence | None = None,
) -> JournalApplier:
    """Open (and recover) the accept journal and its applier for ``engine``'s store, and log where the
    journal is and how much of it is still to apply."""
    from alerting.applier import JournalApplier  # noqa: PLC0415
    from alerting.journal import AcceptJournal, JournalCorrupt, applied_offset  # noqa: PLC0415

    sql = engine.store.engine
    directory = journal_dir(cfg, db).resolve()  # absolute in every message and status (quarantine_dir)
    try:
        journal = AcceptJournal(directory, lambda journal_id: applied_offset(sql, journal_id))
    except JournalCorrupt as exc:  # damage, not a torn write: the operator decides
        if cfg.alerting.journal_dir:
            raise ConfigError(str(exc), field="alerting.journal_dir") from exc
        # The directory is the one derived from the store, not a setting: name the file, not the config.
        raise ConfigError(exc.detail, path=f"journal {exc.segment or directory}") from exc
    where = directory.resolve()
    logger.info("journal: %s", where)  # under the working directory for a server's store: check_serve warns
    if not cfg.alerting.journal_dir:
        _name_former_journals(db, where, sql)
    applier = JournalApplier(
        journal, engine, health=health, fence=fence, stall_seconds=cfg.alerting.applier_stall_seconds
    )
    if applier.replay_end > applier.applied:
        logger.info(
            "journal: %d bytes acknowledged but not applied before the last stop; replaying them while"
            " serving (/-/ready answers 503 until done)",
            applier.replay_end - applier.applied,
        )
    return applier


def _name_former_journals(db: str, where: Path, sql: Engine) -> None:
    """Warn of the journals earlier releases kept elsewhere for the SQLite store ``db`` (its journal is now
    ``where``): alerts they acknowledged and did not apply wait there, and serve does not read them."""
    from alerting.journal import unapplied_bytes  # noqa: PLC0415 - see serve_cmd.build_service

    given = sqlite_path(db)
    if not given:
        return
    beside_link = Path(f"{given}.journal")
    if beside_link.is_dir() and beside_link.resolve() != where:
        logger.warning(
            "journal: %s is beside the link %s; a store's journal is now beside the file it points to. If"
            " serve was stopped with alerts acknowledged but not applied, start it once with"
            " alerting.journal_dir set to %s to apply them, then remove that directory",
            beside_link,
            given,
            beside_link,
        )
    before = _journal_before_0ce92c9(db).absolute()
    if before.resolve() == where:
        return
    try:
        held = unapplied_bytes(sql, before)
    except (OSError, ValueError) as exc:  # serve does not use it, so it starts; what it holds is unknown
        logger.warning(
            "journal: cannot read %s, where releases before 0ce92c9 kept this store's journal (%s): it may"
            " hold alerts acknowledged but not applied; make it readable by serve's user and start serve once"
            " with alerting.journal_dir set to %s to apply them, then remove that directory",
            before,
            exc,
            before,
        )
        return
    if held:
        logger.warning(
            "journal: %s holds %d bytes acknowledged but not applied, kept there for this store by a release"
            " before 0ce92c9; start serve once with alerting.journal_dir set to %s to apply them, then remove"
            " that directory",
            before,
            held,
            before,
        )


def _journal_before_0ce92c9(db: str) -> Path:
    """Where releases before 0ce92c9 kept ``db``'s journal: beside all after ``sqlite:///`` (its query and
    %-escapes too), and for any other URL (``sqlite+pysqlite://``) ./gpuwarden-journal."""
    if "://" not in db:
        return Path(f"{os.path.realpath(db)}.journal")
    if db.startswith("sqlite:///") and len(db) > len("sqlite:///"):
        return Path(f"{os.path.realpath(db.removeprefix('sqlite:///'))}.journal")
    return Path("gpuwarden-journal")
