"""BuiltCliRunner runs what typer's CliRunner would: a command built once per app, built again when what typer
reads to build it has changed since (a callback or a global its options name, monkeypatched by a test)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import pytest
import typer
import typer.main

from tests.gpuwarden.cli.built_runner import BuiltCliRunner

GREETING_HELP = "Who is greeted."


def _two_commands() -> typer.Typer:
    """An app of two commands (a group, as gpuwarden's), each printing what it was given."""
    app = typer.Typer()

    @app.command()
    def hello(name: Annotated[str, typer.Option(help=GREETING_HELP)] = "you") -> None:
        typer.echo(f"hello {name}")

    @app.command()
    def bye() -> None:
        typer.echo("bye")

    return app


def _counted_builds(monkeypatch: pytest.MonkeyPatch) -> list[typer.Typer]:
    """Every app typer builds a command for from now on."""
    built: list[typer.Typer] = []
    get_command = typer.main.get_command

    def counted(app: typer.Typer) -> Any:
        built.append(app)
        return get_command(app)

    monkeypatch.setattr(typer.main, "get_command", counted)
    return built


def test_an_app_is_built_once_for_every_runner_and_invoke(monkeypatch: pytest.MonkeyPatch) -> None:
    app = _two_commands()
    built = _counted_builds(monkeypatch)
    said = [BuiltCliRunner().invoke(app, ["hello", "--name", n]).output for n in ("a", "b")]
    said += [BuiltCliRunner().invoke(app, ["bye"]).output]
    assert said == ["hello a\n", "hello b\n", "bye\n"]
    assert built == [app]


def test_a_callback_monkeypatched_after_the_first_invoke_is_the_one_that_runs() -> None:
    app = _two_commands()
    runner = BuiltCliRunner()
    assert runner.invoke(app, ["bye"]).output == "bye\n"

    def bye() -> None:  # the command's name is its callback's
        typer.echo("patched bye")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app.registered_commands[1], "callback", bye)
        assert runner.invoke(app, ["bye"]).output == "patched bye\n"
    assert runner.invoke(app, ["bye"]).output == "bye\n"


def test_a_global_an_option_names_monkeypatched_after_the_first_invoke_is_read() -> None:
    app = _two_commands()
    runner = BuiltCliRunner()
    assert "Who is greeted." in runner.invoke(app, ["hello", "--help"]).output
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys.modules[__name__], "GREETING_HELP", "Whom to greet.")
        said = runner.invoke(app, ["hello", "--help"]).output
    assert "Whom to greet." in said
    assert "Who is greeted." not in said


def test_a_command_added_after_the_first_invoke_can_be_run() -> None:
    app = _two_commands()
    runner = BuiltCliRunner()
    assert runner.invoke(app, ["bye"]).exit_code == 0

    @app.command()
    def later() -> None:
        typer.echo("added later")

    assert runner.invoke(app, ["later"]).output == "added later\n"
