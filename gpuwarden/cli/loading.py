"""A stop signal that reaches ``serve``, ``exporter``, ``inference-server`` or ``anomaly run`` while it still
loads.

Its imports and configuration take seconds (2-6 on a loaded machine) before the command installs its own
handlers (``gpuwarden.graceful``): SIGTERM's default action killed it there, exit 143 and no line said, where
a stop signal gives exit 0 (README: exit statuses), and Kubernetes and systemd stop a pod or a unit that is
just starting. Nothing is made by then (no store, nothing learnt, written or buffered; ``anomaly run`` holds
its state file's lock, which the exit lets go), so the handler installed first thing
(``stop_while_loading``) says it stopped and exits 0 at once. The command's own handlers replace it; when
theirs end they put back what it replaced (``replaced``), not it. A short command (``incidents list``,
``anomaly score``) keeps the defaults: killed by SIGTERM, it exits 143 as any other program.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import PurePath
from types import FrameType

# Imported before the handler is installed: imported in it, a signal that came during the command's own
# import of logging found that module half made.
from gpuwarden.cli.logs import JsonLogFormatter, LogFormat, TextLogFormatter

# The long-running commands (one word, or a group and its command), each with the logger its lines go to
# and its --log-format default.
LONG_RUNNING = {
    "serve": ("gpuwarden.cli.serve_cmd", LogFormat.JSON),
    "exporter": ("gpuwarden.cli.exporter_cmd", LogFormat.TEXT),
    "inference-server": ("gpuwarden.cli.inference_cmd", LogFormat.TEXT),
    "anomaly run": ("gpuwarden.cli.anomaly_cmd", LogFormat.TEXT),
}
_SIGNALS = (signal.SIGINT, signal.SIGTERM)

Handler = Callable[[int, FrameType | None], object] | int | None  # as signal.signal returns it


class LoadingStop:
    """The handler while ``command`` loads: one log line in its ``log_format``, then exit 0."""

    def __init__(self, command: str, log_format: LogFormat) -> None:
        self.command = command
        self.log_format = log_format
        self.replaced: dict[int, Handler] = {}  # what it replaced, put back after the command's own

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        logger, _ = LONG_RUNNING[self.command]
        message = f"{self.command} stopped by {name} while it started: nothing was running yet"
        record = logging.getLogger(logger).makeRecord(logger, logging.INFO, "(loading)", 0, message, (), None)
        formatter = JsonLogFormatter() if self.log_format is LogFormat.JSON else TextLogFormatter()
        try:
            sys.stderr.write(formatter.format(record) + "\n")
            sys.stderr.flush()
            if sys.stdout is not None:
                sys.stdout.flush()
        except (AttributeError, OSError, ValueError, RuntimeError):  # no stderr, closed, or being written
            pass
        os._exit(0)  # nothing to clean up, and no `finally` of half-made state to run through


def stop_while_loading(argv: Sequence[str]) -> LoadingStop | None:
    """Exit 0, one line said, at SIGINT or SIGTERM until the command's own handlers take over; only for
    a long-running command run as ``gpuwarden`` or ``python -m gpuwarden`` (``argv`` is ``sys.argv``), never
    where the CLI is imported (a test, ``typer``'s runner)."""
    program = PurePath(argv[0]) if argv else PurePath()
    if program.name != "gpuwarden" and program.parts[-2:] != ("gpuwarden", "__main__.py"):
        return None
    words = 2 if len(argv) > 2 and " ".join(argv[1:3]) in LONG_RUNNING else 1
    command = " ".join(argv[1 : 1 + words])
    if command not in LONG_RUNNING:
        return None
    handler = LoadingStop(command, log_format_given(argv[1 + words :], LONG_RUNNING[command][1]))
    for sig in _SIGNALS:
        handler.replaced[sig] = signal.signal(sig, handler)
    return handler


def log_format_given(args: Sequence[str], default: LogFormat) -> LogFormat:
    """The ``--log-format`` the command line gives (``json``, ``--log-format=TEXT``), else ``default``."""
    found = default
    for i, arg in enumerate(args):
        value = args[i + 1] if arg == "--log-format" and i + 1 < len(args) else ""
        if arg.startswith("--log-format="):
            value = arg.partition("=")[2]
        if value.lower() in {f.value for f in LogFormat}:
            found = LogFormat(value.lower())
    return found
