"""Schema migrations, run programmatically (no alembic.ini at runtime)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from alerting.db import make_engine
from gpuwarden.errors import ConfigError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migration scripts."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database behind ``engine`` to ``revision`` (idempotent)."""
    cfg = alembic_config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def open_store(url: str, field: str = "api.db") -> Engine:
    """The store's engine, migrated; what keeps it from opening is a ``ConfigError`` naming ``field``.

    An unknown database, a server that refuses the connection and a SQLite file that cannot be created
    stop ``serve`` with the URL (password hidden) and the reason instead of a traceback.
    """
    try:
        engine = make_engine(url)
        upgrade(engine)
    except (ArgumentError, NoSuchModuleError, ModuleNotFoundError, SQLAlchemyError) as exc:
        raise store_error(url, exc, field) from exc
    return engine


def store_error(url: str, exc: Exception, field: str = "api.db") -> ConfigError:
    """The ``ConfigError`` for a store that cannot be used: the URL with its password hidden, and why."""
    shown = url
    if "://" in url:
        try:
            shown = make_url(url).render_as_string(hide_password=True)
        except ArgumentError:
            shown = url
    if isinstance(exc, ArgumentError | NoSuchModuleError | ModuleNotFoundError):
        message = (
            f"{shown}: not a database gpuwarden can use ({exc}); give a SQLite path or postgresql+psycopg://"
        )
        return ConfigError(message, field=field)
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    hint = " (does its directory exist?)" if "://" not in url or url.startswith("sqlite") else ""
    return ConfigError(f"{shown}: cannot open the store: {reason}{hint}", field=field)
