"""The logging setup of every long-running command (serve, anomaly run, exporter, demo), in one place.

Every command logs in one of two formats, chosen with ``--log-format`` as Prometheus' ``--log.format``:
``text``, ``2026-12-06T20:20:02.057Z INFO gpuwarden.serve: serving on 127.0.0.1:8080``, or ``json``, one
object per line (``ts``, ``level``, ``logger``, ``msg``, and ``exc`` with a traceback). The time is UTC in
RFC 3339 with milliseconds in both: a log shipper reads it without knowing the machine's zone.

httpx logs each request at INFO with its full URL (``HTTP Request: POST http://.../services/T000/B000/XXXX?
api_key=... "HTTP/1.1 200 OK"``): a webhook URL that holds a credential reached the log at every delivery,
though ``config show`` hides it. httpx and httpcore speak at WARNING and above here; gpuwarden's own lines say
what was delivered or why not, with URLs shown by ``gpuwarden.redaction``.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from enum import StrEnum

QUIET_LOGGERS = {
    "httpx": logging.WARNING,  # a line per request, with its whole URL (a webhook's credential)
    "httpcore": logging.WARNING,  # the same connection's steps, at DEBUG
    "apscheduler": logging.WARNING,  # "Running job", "executed" every tick of anomaly run
    "alembic.runtime.plugins": logging.WARNING,  # "setup plugin ..." for each of its plugins at start
    "alembic.runtime.migration": logging.WARNING,  # 4 lines a start, 1 a migration: see alerting.migrate
}


class LogFormat(StrEnum):
    """What ``--log-format`` takes."""

    TEXT = "text"
    JSON = "json"


LOG_FORMAT_HELP = "How log lines are written to stderr: text, or json (one object per line); times in UTC."


def utc_time(record: logging.LogRecord) -> str:
    """When ``record`` was made, in UTC, RFC 3339 with milliseconds: ``2026-12-06T20:20:02.057Z``."""
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(record.created))}.{int(record.msecs):03d}Z"


# A record's own attributes; any other was given by its call in ``extra=`` (or a library's, below).
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_NOT_CONTEXT = frozenset({"color_message"})  # uvicorn's: its message again, with terminal colours


def context_fields(record: logging.LogRecord) -> dict[str, object]:
    """What the call gave in ``extra=`` (``incident_id``, what a prune deleted): the context fields of a
    line, which neither format wrote before (``pruned resolved history`` said nothing of what it pruned)."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _RECORD_FIELDS and key not in _NOT_CONTEXT and not key.startswith("_")
    }


class TextLogFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: MESSAGE key=value ...``, the traceback on the lines after."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The line, its context fields after the message."""
        fields = "".join(f" {key}={value}" for key, value in context_fields(record).items())
        return super().formatMessage(record) + fields

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """The record's time in UTC (``utc_time``), not the machine's zone without saying which."""
        return utc_time(record)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log line."""

    def format(self, record: logging.LogRecord) -> str:
        """Render time, level, logger, message (and the exception, if any)."""
        out: dict[str, object] = {
            "ts": utc_time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        out["msg"] = record.getMessage()
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        for key, value in context_fields(record).items():
            out.setdefault(key, value)  # never in place of the line's own
        return json.dumps(out, default=str)  # a datetime or a path given in ``extra=`` as its text


def json_log_line(logger: str, level: int, message: str) -> str:
    """``message`` as a JSON log line of ``logger`` at ``level``, written where logging is not set up yet: a
    usage error, found while the command line is read. ``JsonLogFormatter`` makes it, the formatter that
    makes the command's other lines (``StartupLines``' among them): the same keys in the same order."""
    record = logging.getLogger(logger).makeRecord(logger, level, "(unknown file)", 0, "%s", (message,), None)
    return JsonLogFormatter().format(record)


def configure_logging(
    level: int, log_format: LogFormat = LogFormat.TEXT, handler: logging.Handler | None = None
) -> None:
    """Log at ``level`` in ``log_format``, with the chatty libraries quieted: to ``handler``, replacing the
    root's handlers, else to stderr unless the root has a handler already (as ``logging.basicConfig``)."""
    formatter = JsonLogFormatter() if log_format is LogFormat.JSON else TextLogFormatter()
    if handler is not None:
        handler.setFormatter(formatter)
        logging.basicConfig(level=level, handlers=[handler], force=True)
    else:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(formatter)
        logging.basicConfig(level=level, handlers=[stream])
    for name, quiet in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(quiet)


def keep_running_on_sighup(command: str, restart_note: str = "") -> None:
    """SIGHUP, which Prometheus and Alertmanager take as "reload" and a closing SSH session sends, logs that a
    changed configuration needs a restart of ``command``; its default action ended the process silently,
    without the clean-up a stop signal gets (locks, buffered spans). Outside the main thread, which alone
    receives signals (a test's), nothing."""
    if threading.current_thread() is not threading.main_thread():
        return

    def said(*_: object) -> None:
        logging.getLogger(__name__).warning(
            "SIGHUP: config reload is not supported; restart `gpuwarden %s` to apply a changed"
            " configuration%s",
            command,
            restart_note,
        )

    signal.signal(signal.SIGHUP, said)
