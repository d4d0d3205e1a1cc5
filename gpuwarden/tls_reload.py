"""A renewed certificate and a changed ``tls_server_config`` served without a restart: the TLS context of the
web configuration file (``gpuwarden.webconfig``) is rebuilt when its certificate, key or client CA file
changes, or the file itself, as exporter-toolkit reads them at each new connection and as cert-manager and
certbot expect of a server they renew for.

The context the server was given makes each new connection from the context built from the files as they
are now (``ServerContext.newest``, ``gpuwarden.tls_handshake``); a connection open already keeps the settings
it was made with. The files' size, modification time and inode are looked at once a second at most; a
change rebuilds the context with the start-up checks. A replacement that does not load (a key that is not
the certificate's, a file half written, a setting refused) keeps the last good one serving and is logged
once, naming the file, until the files change again: not once per connection. ``Reloading`` does the same
for anything read from files: the web configuration file's users and headers (``gpuwarden.webconfig``) are
read again the same way.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from gpuwarden.errors import ConfigError

logger = logging.getLogger("gpuwarden.webconfig")
CHECK_SECONDS = 1.0
FileSignature = tuple[int, int, int] | None  # size, modification time, inode; None: unreadable
Signature = tuple[FileSignature, ...]
T = TypeVar("T")


def signature(files: Sequence[Path]) -> Signature:
    """What tells a file replaced or rewritten: its size, modification time and inode (None: unreadable)."""
    found: list[FileSignature] = []
    for file in files:
        try:
            st = os.stat(file)
        except OSError:
            found.append(None)
        else:
            found.append((st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(found)


class Reloading(Generic[T]):
    """The newest value ``build`` made from ``files`` without a ``ConfigError``; ``first`` until they
    change. ``kept`` ends the warning when a build fails (``keeping``), ``reloaded`` (``{files}``) the line
    when one succeeds. A build that reads other files than ``files`` names them to ``reads_too``: a refused
    build is tried again when they change too (a certificate the file names, not there yet)."""

    kept = "still using what was read before"
    reloaded = "read again: {files}"

    def __init__(
        self,
        first: T,
        build: Callable[[], T],
        files: Sequence[Path],
        seen: Signature,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.value = first
        self._build = build
        self._files = tuple(files)
        self._loaded = seen  # the files as the value in use was built from them
        self._refused: Signature | None = None  # the files as they were when a rebuild last failed
        self._also: tuple[Path, ...] = ()  # what the refused build read besides ``files``
        self._reading: list[tuple[Path, FileSignature]] = []  # ``reads_too`` of the build running
        self._clock = clock
        self._checked = clock()
        self._lock = threading.Lock()

    def current(self) -> T:
        """The value for a new connection or request: rebuilt first when a file changed since the last look
        (once a second at most)."""
        now = self._clock()
        with self._lock:
            if now - self._checked < CHECK_SECONDS:
                return self.value
            self._checked = now
            seen = signature(self._files + self._also)
            if seen in (self._loaded, self._refused):
                return self.value
            own = seen[: len(self._files)]
            self._reading = []
            try:
                value = self._build()
            except ConfigError as exc:
                self._also = tuple(file for file, _ in self._reading)
                self._refused = own + tuple(sig for _, sig in self._reading)
                logger.warning("%s; %s", exc, self.keeping(exc))
                return self.value
            self.value, self._loaded, self._refused, self._also = value, own, None, ()
            logger.info(self.reloaded.format(files=", ".join(map(str, self._files))))
            return value

    def reads_too(self, files: Sequence[Path]) -> Signature:
        """Called by ``build`` before it reads ``files``: their signature now; were the build refused, a
        change of them tries it again."""
        seen = signature(files)
        self._reading.extend(zip(files, seen, strict=True))
        return seen

    def keeping(self, exc: ConfigError) -> str:
        """What is served instead of a build refused with ``exc``."""
        return self.kept


class ReloadingContext(Reloading[ssl.SSLContext]):
    """The newest TLS context ``build`` made from the certificate, key and client CA ``files``."""

    kept = "still serving the certificate loaded before"
    reloaded = "TLS certificate reloaded from {files}"
