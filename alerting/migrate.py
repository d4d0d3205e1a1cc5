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
    shown = url
    try:
        if "://" in url:
            shown = make_url(url).render_as_string(hide_password=True)
        engine = make_engine(url)
        upgrade(engine)
    except (ArgumentError, NoSuchModuleError, ModuleNotFoundError) as exc:
        message = (
            f"{shown}: not a database gpuwarden can use ({exc}); give a SQLite path or postgresql+psycopg://"
        )
        raise ConfigError(message, field=field) from exc
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        hint = " (does its directory exist?)" if "://" not in url or url.startswith("sqlite") else ""
        raise ConfigError(f"{shown}: cannot open the store: {reason}{hint}", field=field) from exc
    return engine
