"""Where a file written whole is put: through a symlink only where Linux itself would follow it.

The anomaly state snapshot and a command's ``--output`` are written beside the file their name resolves to
and renamed over that file (the snapshot's lock is opened there too). Resolving the name with
``os.path.realpath`` follows every symlink without the check the kernel makes on ``open``
(``fs.protected_symlinks``): in a sticky directory every user can write (``/tmp``), a symlink is followed
only when it belongs to the process's user or to the directory's owner. A local user who made
``/tmp/gpuwarden-anomaly.state.npz`` a link to any file had ``anomaly run`` (as root) replace that file with
a snapshot. The same rule is applied here, to every symlink on the way, whatever the kernel's setting.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_MAX_LINKS = 40  # Linux's MAXSYMLINKS


class UntrustedSymlink(OSError):
    """A symlink on the way to a file that is not followed (``resolved_path``)."""


def resolved_path(path: Path) -> Path:
    """``path`` with every symlink resolved, as ``os.path.realpath`` gives it; raises ``UntrustedSymlink``
    for a symlink in a sticky, world-writable directory that belongs neither to this process's user nor to
    the directory's owner."""
    current = Path("/")
    parts = list(Path(os.path.abspath(path)).parts[1:])
    links = 0
    while parts:
        name = parts.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            current = current.parent
            continue
        candidate = current / name
        try:
            link = os.lstat(candidate)
        except OSError:  # missing (a file not yet saved) or not a directory: nothing more to follow
            return Path(os.path.realpath(path))
        if not stat.S_ISLNK(link.st_mode):
            current = candidate
            continue
        links += 1
        if links > _MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path))
        _check_followed(candidate, link, os.stat(current))
        target = Path(os.readlink(candidate))
        parts = [*target.parts[1:], *parts] if target.is_absolute() else [*target.parts, *parts]
        if target.is_absolute():
            current = Path("/")
    return current


def _check_followed(candidate: Path, link: os.stat_result, directory: os.stat_result) -> None:
    """Raise ``UntrustedSymlink`` unless Linux's ``fs.protected_symlinks`` would follow ``candidate``."""
    shared = directory.st_mode & stat.S_ISVTX and directory.st_mode & stat.S_IWOTH
    if shared and link.st_uid not in (os.geteuid(), directory.st_uid):
        raise UntrustedSymlink(
            errno.EACCES,
            f"{candidate} is a symlink of user {link.st_uid} in {candidate.parent}, a sticky directory every"
            " user can write, and is not followed (as Linux refuses to, fs.protected_symlinks): anyone could"
            " point it at a file to be replaced; write to a directory of its own",
        )
