"""Progress of a long CLI step on stderr, for a person at a terminal only.

Written to a file or a pipe (CI, ``2>log``) it prints nothing: a bar redrawn in place is noise there, and the
command's result line says what was done. ``--quiet`` turns it off at a terminal too. The bar is transient:
once the command ends, only its result remains.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from gpuwarden.cli.consoles import CliConsole

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class StepProgress:
    """A context manager showing what is being done (``phase``) and how far along (``advance``)."""

    def __init__(self, console: CliConsole, *, quiet: bool = False) -> None:
        self._console = console
        self.enabled = not quiet and console.is_terminal
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> StepProgress:
        if self.enabled:
            # Imported here: rich.progress is needed only when a bar is shown.
            from rich.progress import (  # noqa: PLC0415
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self._console,
                transient=True,
            )
            self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def phase(self, description: str, total: int | None = None) -> None:
        """Start a new step: ``description``, and its size when known (else a bar with no end)."""
        if self._bar is None:
            return
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(description, total=total)
        self._bar.refresh()  # shown now, not at the next tick of the bar's timer

    def advance(self, done: int, total: int, *, redraw: bool = True) -> None:
        """``done`` of ``total`` of the current step are done; ``redraw=False`` leaves drawing it to the bar's
        own timer (10 a second), for a caller that advances too often to draw each time (loadgen)."""
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, total=total, refresh=redraw)
