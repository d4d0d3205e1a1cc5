"""Whether the reader of standard output has gone (``gpuwarden demo | head -2``), asked without writing.

A command learns that its reader left only when it next writes (EPIPE). The demo's warm-up writes nothing
for 40 s, so ``demo | head -2`` ran that long after ``head`` had exited; asked at each tick, it stops within
one. ``poll`` says so for a pipe (``POLLERR``) or a socket shut both ways (``POLLHUP``) whose reader is
gone; a terminal, a file or ``/dev/null`` always takes more.
"""

from __future__ import annotations

import errno
import os
import select
import sys


def stdout_reader_gone() -> bool:
    """Whether standard output is a pipe or socket nobody reads any more; False where that cannot be told."""
    poll = getattr(select, "poll", None)  # not on Windows
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no stdout, or one with no descriptor (a test's buffer)
        return False
    if poll is None:
        return False
    poller = poll()
    poller.register(fd, select.POLLOUT)  # POLLERR and POLLHUP come whatever was asked for
    try:
        events = poller.poll(0)
    except OSError:
        return False
    return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events)


def stop_if_stdout_reader_gone() -> None:
    """Raise ``BrokenPipeError``, as the next write would, when stdout's reader has gone: the CLI's own
    handling of a broken pipe then ends the command (quiet, exit 1), its clean-ups run on the way."""
    if stdout_reader_gone():
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
