"""Who `gpuwarden incidents` writes as: the OS user when $USER is unset, and --by and --author, amtool's
spelling of it."""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import Any

import pytest

from gpuwarden.cli import app
from tests.gpuwarden.api_client import TestClient
from tests.gpuwarden.cli.command_tree import _commands
from tests.gpuwarden.cli.incidents_answers import URL, _in_process, runner
from tests.integration.gpuwarden_server import AUTH, TOKEN

NAME_VARIABLES = ("USER", "LOGNAME", "LNAME", "USERNAME")  # what getpass.getuser() reads before pwd


def _one_node_down(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The incident of one node down, and the token the CLI's writes need."""
    down = {"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "r01-n01"}}
    client.post("/api/v2/alerts", json=[down], headers=AUTH)
    (item,) = client.get("/api/v1/incidents").json()
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", TOKEN)
    return dict(item)


@pytest.mark.parametrize("passwd", [True, False], ids=["os-user", "uid-not-in-passwd"])
def test_an_ack_without_user_set_names_the_os_user_not_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, passwd: bool
) -> None:
    """A cron job or container has no $USER: every ack read "acknowledged by cli". As amtool's --author,
    the OS user (the password database), else the uid."""
    for name in NAME_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    expected = pwd.getpwuid(os.getuid()).pw_name if passwd else f"uid {os.getuid()}"
    if not passwd:

        def no_entry(uid: int) -> pwd.struct_passwd:
            raise KeyError(f"getpwuid(): uid not found: {uid}")

        monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with _in_process(tmp_path, monkeypatch) as (client, _):
        item = _one_node_down(client, monkeypatch)
        result = runner.invoke(app, ["incidents", "ack", item["id"], "--url", URL])
        assert result.exit_code == 0, result.output
        (acked,) = [
            e
            for e in client.get(f"/api/v1/incidents/{item['id']}").json()["timeline"]
            if e["kind"] == "acknowledged"
        ]
        assert acked["message"].endswith(f"by {expected}"), acked


def test_author_is_the_same_option_as_by_as_amtool_spells_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _in_process(tmp_path, monkeypatch) as (client, _):
        item = _one_node_down(client, monkeypatch)
        result = runner.invoke(
            app, ["incidents", "note", item["id"], "reseated", "--url", URL, "--author", "carol"]
        )
        assert result.exit_code == 0, result.output
        timeline = client.get(f"/api/v1/incidents/{item['id']}").json()["timeline"]
        assert any(e["message"] == "note by carol: reseated" for e in timeline), timeline


# Every command that says who does it, with what else it needs.
BY_COMMANDS = {
    "ack": ["incidents", "ack", "inc-1"],
    "mitigate": ["incidents", "mitigate", "inc-1", "--action", "draining"],
    "note": ["incidents", "note", "inc-1", "reseated"],
    "silence": ["incidents", "silence", "inc-1"],
    "resolve": ["incidents", "resolve", "inc-1"],
    "discard": ["outbox", "discard", "--notifier", "webhook:x", "--yes"],
}


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--author", ""], "--author '': empty; write who does it, or leave --author out for $USER"),
        (["--by", " "], "--by ' ': empty; write who does it, or leave --by out for $USER"),
        (
            ["--by", "alice", "--author", ""],
            "--author '': empty; write who does it, or leave --author out for $USER",
        ),
    ],
    ids=["empty-author", "blank-by", "empty-author-typed-last"],
)
@pytest.mark.parametrize("command", BY_COMMANDS.values(), ids=BY_COMMANDS.keys())
def test_a_bad_by_is_named_as_the_option_typed(command: list[str], argv: list[str], said: str) -> None:
    """``--author ''`` was refused as ``--by ''``, an option the user never typed."""
    result = runner.invoke(app, [*command, "--url", "http://127.0.0.1:9", *argv])
    assert result.exit_code == 2 and said in " ".join(result.stderr.split()), result.output


def test_the_commands_that_say_who_are_every_command_with_author() -> None:
    """A command given ``--author`` without ``ByCommand`` would take ``--by`` over it whatever the order: each
    is in ``BY_COMMANDS``, which the tests here run."""
    root = runner.command(app)
    with_author = {
        path.removeprefix("gpuwarden ")
        for path, command in _commands(root, "gpuwarden")
        if any(param.name == "author" for param in command.params)
    }
    assert with_author == {" ".join(argv[:2]) for argv in BY_COMMANDS.values()}


@pytest.mark.parametrize("command", BY_COMMANDS.values(), ids=BY_COMMANDS.keys())
def test_an_empty_author_overridden_by_a_later_by_is_not_refused(command: list[str]) -> None:
    """As ``--by '' --by alice`` is alice: a wrapper's default overridden by the user's own option. fix/audit3
    refused ``--by`` and ``--author`` naming different people, exit 2, where the last one typed was taken."""
    result = runner.invoke(app, [*command, "--url", "http://127.0.0.1:9", "--author", "", "--by", "alice"])
    assert result.exit_code == 1 and "cannot connect" in result.stderr, result.output  # it asked serve


@pytest.mark.parametrize(
    ("argv", "recorded"),
    [
        (["--by", "alice", "--author", "bob"], "bob"),
        (["--author", "bob", "--by", "alice"], "alice"),
        (["--by", "alice", "--author", "bob", "--by", "carol"], "carol"),
        (["--by", "carol", "--author", "carol"], "carol"),
    ],
    ids=["author-last", "by-last", "by-again-last", "the-same"],
)
def test_by_and_author_given_together_take_the_one_typed_last_as_an_option_given_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], recorded: str
) -> None:
    """``--author`` is ``--by`` as amtool spells it: given both, the last one typed is who, as ``--by a
    --by b`` is b and ``-o json --output text`` is text (click, kubectl); a script that passes ``--by
    "$ONCALL"`` and then the user's ``--author bob`` was refused, exit 2."""
    with _in_process(tmp_path, monkeypatch) as (client, _):
        item = _one_node_down(client, monkeypatch)
        result = runner.invoke(app, ["incidents", "ack", item["id"], "--url", URL, *argv])
        assert result.exit_code == 0, result.output
        timeline = client.get(f"/api/v1/incidents/{item['id']}").json()["timeline"]
        (acked,) = [e for e in timeline if e["kind"] == "acknowledged"]
        assert acked["message"].endswith(f"by {recorded}"), acked


@pytest.mark.parametrize("blank", [" ", "\t"], ids=["space", "tab"])
def test_a_blank_user_variable_is_passed_over_for_the_os_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    """README: by default $USER, else the OS user. A blank $USER (an env file's ``USER=" "``) was sent as who
    did it, and serve's 400 (``by: must be a non-empty string``) failed the ack, exit 1."""
    for name in NAME_VARIABLES:
        monkeypatch.setenv(name, blank)
    expected = pwd.getpwuid(os.getuid()).pw_name
    with _in_process(tmp_path, monkeypatch) as (client, _):
        item = _one_node_down(client, monkeypatch)
        result = runner.invoke(app, ["incidents", "ack", item["id"], "--url", URL])
        assert result.exit_code == 0, result.output
        timeline = client.get(f"/api/v1/incidents/{item['id']}").json()["timeline"]
        (acked,) = [e for e in timeline if e["kind"] == "acknowledged"]
        assert acked["message"].endswith(f"by {expected}"), acked
