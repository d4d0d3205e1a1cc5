"""The SQLite file a running ``serve`` has open, watched for being deleted or replaced under it.

SQLite goes on reading and writing the file it opened after its name is gone (``rm gpuwarden.db*`` while
serve runs, a restore copied over it): every answer looks right, and nothing else can open what it
writes, so a restarted ``serve`` finds no store, or another one, and what was stored since is lost.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


class StoreFile:
    """One SQLite store file and the file it was when ``serve`` opened it."""

    def __init__(self, path: Path) -> None:
        """``path`` exists (serve just opened and migrated it)."""
        self.path = path
        self._identity = _identity(path)
        self.problem: str | None = None  # why the file is not the one serve writes, for /-/ready

    @classmethod
    def watch(cls, path: str | None) -> StoreFile | None:
        """The watch of the SQLite store at ``path``, or None where there is no file to watch (a server, an
        in-memory store)."""
        if not path or not os.path.isfile(path):
            return None
        return cls(Path(os.path.abspath(path)))

    def check(self) -> str | None:
        """Compare the name with the file serve has open; log a change once (and its end); the problem."""
        problem: str | None
        try:
            now = _identity(self.path)
        except FileNotFoundError:
            problem = "was deleted"
        except OSError as exc:
            problem = f"cannot be looked at ({exc.strerror or exc})"
        else:
            problem = None if now == self._identity else "was replaced"
        if problem is not None and self.problem is None:
            logger.error(
                "store: %s %s while serve runs: serve goes on writing the file it opened, which no other"
                " process can open by that name, and a restarted serve would not find what it stores since;"
                " not ready until the name is the file serve has open again",
                self.path,
                problem,
            )
        elif problem is None and self.problem is not None:
            logger.info("store: %s is the file serve has open again", self.path)
        self.problem = None if problem is None else f"the store file {problem} while serve runs"
        return self.problem


def _identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino
