"""A ``CliRunner`` for the modules that invoke ``gpuwarden`` a hundred times: the click command typer builds
from the app is built once, where typer's ``CliRunner.invoke`` builds it anew at every invoke (about 90 ms of
CPU for gpuwarden's commands: most of a test that prints one error)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from unittest import mock

import typer.main
import typer.testing
from typer import Typer
from typer.testing import CliRunner, Result


class BuiltCliRunner(CliRunner):
    """``typer.testing.CliRunner`` whose ``invoke`` runs the command built for ``app`` at its first invoke.

    A process runs the command it built once (``gpuwarden.cli.main``), so what a user sees is the same;
    a command is read at each run (options, environment variables, ``--help``), never changed by one.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._built: dict[int, tuple[Typer, Any]] = {}

    def command(self, app: Typer) -> Any:
        """The click command built from ``app`` (``typer.main.get_command``), built at the first call."""
        built = self._built.get(id(app))
        if built is None or built[0] is not app:
            built = self._built[id(app)] = (app, typer.main.get_command(app))
        return built[1]

    def invoke(
        self,
        app: Typer,
        args: str | Sequence[str] | None = None,
        input: bytes | str | None = None,
        env: Mapping[str, str | None] | None = None,
        catch_exceptions: bool = True,
        color: bool = False,
        **extra: Any,
    ) -> Result:
        """``CliRunner.invoke``, on the command built once for ``app``."""
        command = self.command(app)
        with mock.patch.object(typer.testing, "_get_command", lambda _: command):
            return super().invoke(app, args, input, env, catch_exceptions, color, **extra)
