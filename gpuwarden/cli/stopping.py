"""One-shot commands (``anomaly score``, ``demo``) stopped by SIGTERM as Ctrl-C stops them.

SIGTERM's default action (``timeout``, ``kill``, the end of a batch job) killed the process where it
stood, so no ``finally`` ran: ``anomaly score`` left its half-written temporary output
(``.out.csv.XXXX.tmp``) beside the output, and ``demo`` its temporary store folder (``gpuwarden-demo-*``)
in the temporary directory.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from gpuwarden.graceful import StopSignal, raising_on_stop


@contextmanager
def stopped_as_interrupted(left: str) -> Iterator[None]:
    """Within the block, SIGINT or SIGTERM ends the command after its clean-up has run, with no traceback
    and exit 128 + the signal's number (130, 143), as a shell reports a command that a signal stopped, and
    one line on stderr: which signal, and ``left``, what the stop left (``out.csv is as it was``). A stop
    said nothing: under ``timeout`` or a batch job's end, the log showed no reason and no result."""
    try:
        with raising_on_stop():
            yield
    except StopSignal as stop:
        typer.echo(f"error: stopped by {stop} before it finished; {left}", err=True)
        raise typer.Exit(128 + signal.Signals[str(stop)].value) from stop
