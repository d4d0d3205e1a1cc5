"""Stores written in a form ``api.db`` and ``--db`` do not take: a libpq connection string (psql's ``host=db
dbname=gw user=gw``), which without ``://`` was a SQLite file's name made in serve's working directory, and
a URL whose password holds an unescaped ``@``."""

from __future__ import annotations

import re

from gpuwarden.redaction import REPR_SINGLE, hidden_password

# key=value words, a value with a space quoted as libpq quotes it ('a b', \' inside)
_PAIR = re.compile(rf"(\w+)\s*=\s*({REPR_SINGLE}|\S*)")
_PAIRS = re.compile(rf"\s*(?:{_PAIR.pattern}\s*)+")
# What says where or as whom to connect: a file name holding "=" names none of these.
_WHERE = frozenset({"host", "hostaddr", "port", "dbname", "user", "password", "service"})
# USER:PASSWORD@HOST as SQLAlchemy's make_url reads it (the user has no ':' or '/', the password no '@'),
# with an '@' left in the host: the password's own, unescaped.
_AT_IN_HOST = re.compile(r"^[A-Za-z][\w+.-]*://[^:/]*:[^@]*@[^/:?]*@")


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


def password_at_problem(db: str) -> str | None:
    """Why the store URL ``db`` cannot be used when its password holds an ``@`` not written as ``%40``, or
    None. SQLAlchemy ends the password at its first ``@`` and takes the rest for the host, so psycopg's
    error names that host (``failed to resolve host 'ss@db'``): the password's end. Refused before
    connecting, as a wrong URL, where kubectl and Prometheus would not connect either."""
    if not _AT_IN_HOST.match(db):
        return None
    return (
        f"{hidden_password(db)!r} has an @ in its password that is not percent-encoded, so what follows that"
        " @ would be taken for the host; write each @ of the password as %40"
        " (the password PASS@WORD as postgresql+psycopg://USER:PASS%40WORD@HOST/DBNAME)"
    )
