"""A ``CliRunner`` for the modules that invoke ``gpuwarden`` a hundred times: the click command typer builds
from the app is built once, where typer's ``CliRunner.invoke`` builds it anew at every invoke (about 80 ms of
CPU for gpuwarden's commands: most of a test that prints one error)."""

from __future__ import annotations

import ast
import functools
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from unittest import mock

import typer.main
import typer.testing
from typer import Typer
from typer.models import CommandInfo, TyperInfo
from typer.testing import CliRunner, Result

# Every runner's commands, one per app: built again when what typer read to build it is no longer there.
_BUILT: weakref.WeakKeyDictionary[Typer, tuple[list[object], Any]] = weakref.WeakKeyDictionary()


@functools.cache
def _names(annotation: str) -> tuple[str, ...]:
    """The names an annotation's evaluation looks up (not the words of its strings: its help text)."""
    return tuple(
        node.id for node in ast.walk(ast.parse(annotation, mode="eval")) if isinstance(node, ast.Name)
    )


def _read_by_build(app: Typer) -> list[object]:
    """What ``typer.main.get_command(app)`` reads, in order: the settings and registrations of ``app`` and
    of the apps added to it, and of each callback its signature (``inspect.signature``) and the globals its
    annotations name (evaluated at the build: gpuwarden's modules use ``from __future__ import
    annotations``). A test that monkeypatches any of them changes one of these objects."""
    read: list[object] = []

    def callback(function: Callable[..., Any] | None) -> None:
        read.append(function)
        if function is None:
            return
        names = getattr(function, "__globals__", {})
        read.extend(getattr(function, attr, None) for attr in ("__code__", "__defaults__", "__kwdefaults__"))
        read.extend(getattr(function, attr, None) for attr in ("__wrapped__", "__signature__"))
        for annotation in getattr(function, "__annotations__", {}).values():
            if isinstance(annotation, str):
                read.extend(names.get(name) for name in _names(annotation))
            else:
                read.append(annotation)

    def registration(info: CommandInfo | TyperInfo) -> None:
        read.extend(vars(info).values())
        callback(info.callback)

    def typer_app(instance: Typer) -> None:
        read.extend(vars(instance).values())
        registration(instance.info)
        if instance.registered_callback is not None:
            registration(instance.registered_callback)
        for command in instance.registered_commands:
            registration(command)
        for group in instance.registered_groups:
            registration(group)
            if group.typer_instance is not None:
                typer_app(group.typer_instance)

    typer_app(app)
    return read


def _unchanged(before: list[object], now: list[object]) -> bool:
    return len(before) == len(now) and all(a is b for a, b in zip(before, now, strict=True))


class BuiltCliRunner(CliRunner):
    """``typer.testing.CliRunner`` whose ``invoke`` runs the command built for ``app`` by an earlier invoke
    (of any ``BuiltCliRunner``), unless what typer reads to build it has changed since.

    A process runs the command it built once (``gpuwarden.cli.main``), so what a user sees is the same;
    a command is read at each run (options, environment variables, ``--help``), never changed by one.
    A callback, registration or global named in an option that a test monkeypatches is read as typer's
    ``CliRunner`` would; what such a global's own code reads (one call further) is not looked at.
    """

    def command(self, app: Typer) -> Any:
        """The click command built from ``app`` (``typer.main.get_command``), built again if it changed."""
        read = _read_by_build(app)
        built = _BUILT.get(app)
        if built is None or not _unchanged(built[0], read):
            built = _BUILT[app] = (read, typer.main.get_command(app))
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
        """``CliRunner.invoke``, on the command built for ``app``."""
        command = self.command(app)
        with mock.patch.object(typer.testing, "_get_command", lambda _: command):
            return super().invoke(app, args, input, env, catch_exceptions, color, **extra)
