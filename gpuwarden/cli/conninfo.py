"""A store given as a libpq connection string (psql's ``host=db dbname=gw user=gw``), which ``api.db`` and
``--db`` do not take: without ``://`` it was a SQLite file's name, made in serve's working directory."""

from __future__ import annotations

import re

from gpuwarden.redaction import hidden_password

# key=value words, a value with a space quoted as libpq quotes it ('a b', \' inside)
_PAIR = re.compile(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)")
_PAIRS = re.compile(rf"\s*(?:{_PAIR.pattern}\s*)+")
# What says where or as whom to connect: a file name holding "=" names none of these.
_WHERE = frozenset({"host", "hostaddr", "port", "dbname", "user", "password", "service"})


def libpq_string_problem(db: str) -> str | None:
    """Why ``db`` cannot be the store when it is a libpq connection string (its password hidden), with the
    URL to give instead (no password: it belongs in a variable); None for anything else."""
    if "://" in db or not _PAIRS.fullmatch(db):
        return None
    pairs = {key: value.strip("'") for key, value in _PAIR.findall(db)}
    if not _WHERE & pairs.keys():
        return None
    port = f":{pairs['port']}" if "port" in pairs else ""
    where = f"{pairs.get('user', 'USER')}@{pairs.get('host') or pairs.get('hostaddr') or 'HOST'}{port}"
    return (
        f"{hidden_password(db)!r} is a libpq connection string, not a file; give it as a URL:"
        f" postgresql+psycopg://{where}/{pairs.get('dbname', 'DBNAME')} (a password as USER:PASSWORD@, from"
        " a variable: GPUWARDEN_API__DB or api.db: {env: NAME})"
    )
