"""Checks of what a command needs of this machine, made before it makes any file: an address it can
listen on, and a store and journal it can make and keep (a SQLite file, not an in-memory database, in a
directory that exists). ``serve``, ``exporter``, ``anomaly run`` and ``inference-server`` call them at
their start, and ``config validate`` through ``preflight``, so each says the same line."""

from __future__ import annotations

import errno
import os
import re
import socket
import stat
import tempfile
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from gpuwarden.cli.conninfo import libpq_string_problem, password_at_problem
from gpuwarden.cli.consoles import option_said
from gpuwarden.errors import BUSY, ConfigError
from gpuwarden.urls import host_port


def check_listen_address(host: str, field: str) -> None:
    """``host`` is an address or a name this machine can listen on (not ``not an address``, nor the address
    of another machine): one of its addresses takes a bind on port 0, which listens on nothing."""
    advice = "give an IP address of this machine (0.0.0.0: all of them) or its host name"
    subject = "it" if _is_option(field) else repr(host)  # an option says its value before: not twice
    written = _host_written_as_in_a_url(host, field)
    if written is not None:
        raise refused_setting(field, host, f"cannot listen on {subject}: {written}")
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


def _host_written_as_in_a_url(host: str, field: str) -> str | None:
    """What to give instead of an address written as a URL writes it: with its port (``0.0.0.0:9400``,
    ``:9400``, dcgm-exporter's ``--address`` and Prometheus' ``--web.listen-address``) or an IPv6 address
    in brackets (``[::1]``, as the servers' start lines print it); None for any other value. The name
    lookup said only "Name or service not known" of each."""
    bracketed = re.fullmatch(r"\[([^\]]*)\](?::(\d+))?", host)
    if bracketed is not None:
        address, port = bracketed.groups()
    elif host.count(":") == 1 and host.rpartition(":")[2].isdigit():
        address, _, port = host.rpartition(":")
    else:
        return None
    address = address or "0.0.0.0"  # noqa: S104 - ':9400' listens on every interface, as dcgm-exporter's
    if port is None:
        return (
            f"brackets enclose an IPv6 address in a URL (http://[{address}]:PORT), not here; give it without"
            f" them ({address})"
        )
    port_field = "--port" if _is_option(field) else field.rpartition(".")[0] + ".port"
    return (
        f"the port is not part of the address (HOST:PORT, as dcgm-exporter's --address and Prometheus'"
        f" --web.listen-address take it); give the address alone ({address}) and the port as"
        f" {port_field}{' ' if _is_option(field) else ': '}{port}"
    )


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
        hint = {
            errno.EADDRINUSE: "another process listens there; stop it or choose another port",
            # Not taken: this user may not bind it. "another process listens there" sent people looking.
            errno.EACCES: "this user may not listen there (a port under 1024 needs root or"
            " CAP_NET_BIND_SERVICE); choose a port from 1024 up",
        }.get(number or 0, "")
        if not taken:  # the host's fault: as validate says it ("not an address of this machine; give ...")
            check_listen_address(host, host_field)
        reason = getattr(exc, "strerror", None) or exc
        field, value = (port_field, port) if taken else (host_field, host)
        where = host_port(host, port)  # [::]:9400: ":::9400" reads as no address at all
        said = f"cannot listen on {where}: {reason}{f'; {hint}' if hint else ''}"
        # In use: free once the other process stops; not allowed (a port under 1024): as long as the setting.
        raise refused_setting(field, value, said, BUSY if number == errno.EADDRINUSE else None) from exc
    return sock


def refused_setting(field: str, value: object, message: str, outside: str | None = None) -> ConfigError:
    """The error for ``value`` of ``field``: a setting (``api.port``) is named and located as a setting; a
    command-line option as every bad option is said, ``--port 9400: message`` (``option_said``).
    ``outside``: ``ConfigError.outside``."""
    if _is_option(field):
        return ConfigError(option_said(field, value, message), outside=outside)
    return ConfigError(message, field=field, outside=outside)


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
        check_store_driver(db, field)
        return
    if "://" in db:  # sqlite+driver://
        check_store_driver(db, field)
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
    foreign = _not_sqlite(path)
    if foreign is not None:
        raise ConfigError(
            f"{path} {foreign}, so serve could not open the store in it; give the store's file, or the name"
            " of a new one",
            field=field,
        )
    links = _links(path)
    if links > 1:
        raise ConfigError(
            f"{path} is one of {links} names (hard links) of the store's file: each name gets a store lock,"
            " a journal and a SQLite WAL of its own, so a serve given another name ran beside this one on"
            " the same store (duplicate incidents and pages, a database SQLite may corrupt); keep one name"
            f" and remove the other links (find / -xdev -samefile {path} lists them)",
            field=field,
        )


def _links(path: str) -> int:
    """How many names (hard links) the file at ``path`` has; 0 when there is none yet (serve makes it)."""
    try:
        return os.stat(path).st_nlink
    except OSError:  # missing, or a path no file can have: the checks above name what is wrong
        return 0


_SQLITE_START = b"SQLite format 3\x00"  # the header of every SQLite database file


class NotRegularFile(Exception):
    """A path that names a FIFO, a device, a directory or a socket where a file of data belongs."""


def file_start(path: str | Path, size: int) -> bytes:
    """The first ``size`` bytes of the regular file at ``path`` (fewer for a shorter one), to tell what wrote
    it; ``NotRegularFile`` for anything else (a FIFO's read would wait for a writer), ``OSError`` (a missing
    file's ``FileNotFoundError`` among them) when it cannot be read."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise NotRegularFile(path)
    with open(path, "rb") as file:
        return file.read(size)


def _not_sqlite(path: str) -> str | None:
    """Why the existing ``path`` cannot be a SQLite store (a FIFO, a file of another kind: the configuration,
    the anomaly state file), or None: it does not exist, is empty (SQLite makes it one) or is a database.
    ``config validate`` said ok to such a file, and ``serve`` refused it only once it opened the store,
    leaving the lock file and journal directory it had made beside it."""
    try:
        start = file_start(path, len(_SQLITE_START))
    except NotRegularFile:
        return "is not a regular file"
    except (FileNotFoundError, NotADirectoryError):  # no such file: its directory's own check says why
        return None
    except OSError as exc:  # unreadable: serve's open says why, in SQLite's words
        return None if exc.errno == errno.EACCES else f"cannot be read ({exc.strerror})"
    if not start or start == _SQLITE_START:
        return None
    return "is not a SQLite database (it does not start with SQLite's header)"


def check_store_driver(db: str, field: str) -> None:
    """The database a store URL names is one gpuwarden can open: its SQLAlchemy dialect and driver load
    (``postgres://``, ``mysql://``, ``postgresql+asyncpg://`` do not). The engine connects to nothing until
    used. ``config validate`` said ok to such a URL, which ``serve`` refused only once it had made the store
    lock's file."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError  # noqa: PLC0415 - config validate starts light

    from alerting.db import make_engine, store_url  # noqa: PLC0415
    from alerting.migrate import store_error  # noqa: PLC0415

    try:
        backend = store_url(db).get_backend_name()
        if backend not in ("sqlite", "postgresql"):  # the store lock's rule (alerting.instance_lock)
            raise ArgumentError(f"{backend} is not supported")
        make_engine(db).dispose()
    except (ArgumentError, NoSuchModuleError, ModuleNotFoundError) as exc:  # as open_store says them
        raise store_error(db, exc, field) from exc


def _is_dir(path: str, field: str) -> bool:
    """Whether ``path`` is a directory; a path no file can have (a name over the system's limit) is a
    ``ConfigError`` saying so, where ``is_dir`` raised OSError (a traceback)."""
    try:
        return Path(path).is_dir()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot use it: {exc.strerror}", field=field) from exc


def check_store_directory(db: str, field: str) -> None:
    """A SQLite store's directory exists and takes files: ``serve`` makes the file, not the directory, and
    its lock file and SQLite's ``-wal`` and ``-shm`` go beside the file, so it refused to start in a
    directory it cannot write (read-only, another user's) where ``config validate`` said ok."""
    directory = _store_directory(db)
    if directory is None:
        return
    if not directory.is_dir():
        raise ConfigError(
            f"{sqlite_path(db)}: its directory {directory} does not exist; make it, or give a file in a"
            " directory that exists",
            field=field,
        )
    unwritable = store_directory_unwritable(db)
    if unwritable is not None:
        raise ConfigError(
            f"{sqlite_path(db)}: cannot make files in its directory {directory}: {unwritable.strerror} (the"
            " store's lock and SQLite's -wal and -shm files go there); give a file in a directory serve can"
            " write",
            field=field,
        ) from unwritable


def _store_directory(db: str) -> Path | None:
    """The directory of a SQLite store's file; None for a database server, an in-memory store, or a path
    no file can have (a name too long: ``check_store`` names why)."""
    path = sqlite_path(db)
    if not path or path == ":memory:":
        return None
    try:
        directory = Path(os.path.realpath(path)).parent
        directory.is_dir()
    except OSError:
        return None
    return directory


def store_directory_unwritable(db: str) -> OSError | None:
    """Why the existing directory of a SQLite store takes no files, or None: a directory is made in it and
    removed at once, as ``check_journal_dir`` does (``/proc/x`` passes every permission test)."""
    directory = _store_directory(db)
    if directory is None or not directory.is_dir():
        return None
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".gpuwarden-check-", dir=directory))
    except OSError as exc:
        return exc
    return None


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
