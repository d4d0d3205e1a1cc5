"""A file a command writes whole or not at all (``anomaly score --output``).

Checked before the work starts, so a missing directory is said at once rather than after minutes of
scoring; written beside its final name and renamed over it once complete, so a full disk, a Ctrl-C or any
other failure while writing leaves neither a half-written file that reads as a complete one nor a previous
file cut short.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from gpuwarden.cli.consoles import option_said
from gpuwarden.errors import InputError
from gpuwarden.symlinks import resolved_path

STDOUT = "-"  # the usual spelling of "write to stdout" for an output file option


def writes_stdout(path: Path) -> bool:
    """Whether writing ``path`` writes this process's stdout: ``-``, ``/dev/stdout``, or the file or pipe that
    stdout is (``--output out.csv > out.csv``)."""
    if str(path) == STDOUT:
        return True
    try:
        named, stdout = os.stat(path), os.fstat(1)
    except OSError:  # no such file yet, or no stdout: not it
        return False
    return (named.st_dev, named.st_ino) == (stdout.st_dev, stdout.st_ino)


def check_writable(path: Path, field: str) -> None:
    """Refuse, naming the option ``field`` and ``path``, an output that is a directory or whose directory is
    missing or read-only."""
    problem = unwritable(path)
    if problem is not None:
        raise cannot_write(path, field, problem[1], of=problem[0])


def unwritable(path: Path) -> tuple[str, str] | None:
    """Why ``path`` cannot be written, as ``cannot_write`` says it (what comes between ``cannot write`` and
    the reason, then the reason), or None: a directory, or a file whose directory is missing or
    read-only."""
    if path.is_dir():
        return "", "a directory; give a file name in it"
    parent = path.parent
    if not parent.is_dir():
        return "in ", f"{parent}: it does not exist; make it, or give a file in a directory that exists"
    if not os.access(parent, os.W_OK | os.X_OK):
        return "in ", f"{parent}: it is not writable"
    return None


def cannot_write(path: Path, field: str, reason: object, *, of: str = "it: ") -> InputError:
    """``--file 'out.csv': cannot write it: REASON``, as every bad option is said (``option_said``): the
    option, then the path, once; ``of``: what comes between ``cannot write`` and ``reason``."""
    return InputError(option_said(field, str(path), f"cannot write {of}{reason}"))


def write_whole(path: Path, write: Callable[[Path], None], field: str) -> None:
    """Call ``write`` on a temporary file beside ``path``'s target, then rename it to that target.

    A symlink is written through (the file it names is replaced), where Linux would follow it
    (``gpuwarden.symlinks``); a FIFO or a device (``/dev/stdout``) is
    written to directly, as renaming over it would not reach the reader.
    """
    try:
        target = resolved_path(path)
    except OSError as exc:
        raise cannot_write(path, field, exc.strerror or exc) from exc
    try:
        special = not stat.S_ISREG(path.stat().st_mode)
    except FileNotFoundError:
        special = False
    if special:  # a failure said as a file's is (`/dev/full`: `--output '/dev/full': cannot write it: ...`)
        with _said_as(path, field):
            write(path)
        return
    try:
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise cannot_write(path, field, exc.strerror or exc) from exc
    os.close(handle)
    temporary = Path(name)
    try:
        with _said_as(path, field):
            os.chmod(temporary, _new_file_mode(target))
            write(temporary)
            os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def _said_as(path: Path, field: str) -> Iterator[None]:
    """A failure to write within the block said as ``cannot_write`` says it, naming ``path`` as the user gave
    it (the error raised names the temporary file, or says ``output: cannot write ...``)."""
    try:
        yield
    except InputError as exc:
        cause = exc.__cause__
        reason = cause.strerror or str(cause) if isinstance(cause, OSError) else exc.message
        raise cannot_write(path, field, reason) from exc
    except OSError as exc:
        raise cannot_write(path, field, exc.strerror or exc) from exc


def _new_file_mode(target: Path) -> int:
    """The mode the file would have had written in place: its current one, else 0666 less the umask."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
