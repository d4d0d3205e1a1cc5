"""The logging setup of every long-running command (serve, anomaly run, exporter, demo), in one place.

httpx logs each request at INFO with its full URL (``HTTP Request: POST http://.../services/T000/B000/XXXX?
api_key=... "HTTP/1.1 200 OK"``): a webhook URL that holds a credential reached the log at every delivery,
though ``config show`` hides it. httpx and httpcore speak at WARNING and above here; gpuwarden's own lines say
what was delivered or why not, with URLs shown by ``gpuwarden.redaction``.
"""

from __future__ import annotations

import logging
import signal

QUIET_LOGGERS = {
    "httpx": logging.WARNING,  # a line per request, with its whole URL (a webhook's credential)
    "httpcore": logging.WARNING,  # the same connection's steps, at DEBUG
    "apscheduler": logging.WARNING,  # "Running job", "executed" every tick of anomaly run
    "alembic.runtime.plugins": logging.WARNING,  # "setup plugin ..." for each of its plugins at start
    "alembic.runtime.migration": logging.WARNING,  # 4 lines a start, 1 a migration: see alerting.migrate
}


def configure_logging(level: int, handler: logging.Handler | None = None, fmt: str | None = None) -> None:
    """Log at ``level`` to ``handler`` (else stderr, in ``fmt``), with the chatty libraries quieted."""
    if handler is not None:
        logging.basicConfig(level=level, handlers=[handler], force=True)
    else:
        logging.basicConfig(level=level, format=fmt or logging.BASIC_FORMAT)
    for name, quiet in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(quiet)


def keep_running_on_sighup(command: str, restart_note: str = "") -> None:
    """SIGHUP, which Prometheus and Alertmanager take as "reload" and a closing SSH session sends, logs that a
    changed configuration needs a restart of ``command``; its default action ended the process silently,
    without the clean-up a stop signal gets (locks, buffered spans). Call from the main thread."""

    def said(*_: object) -> None:
        logging.getLogger(__name__).warning(
            "SIGHUP: config reload is not supported; restart `gpuwarden %s` to apply a changed"
            " configuration%s",
            command,
            restart_note,
        )

    signal.signal(signal.SIGHUP, said)
