"""The ``webhooks`` list: loaded, refused naming ``webhooks[k].field``, shown without its credentials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpuwarden.cli import app
from gpuwarden.config import load_config
from gpuwarden.errors import ConfigError
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.gpuwarden.startable import startable

runner = BuiltCliRunner()
ONE = "webhooks:\n  - name: ops\n    url: {url}\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(text)
    return path


def test_webhooks_are_read_with_their_secrets_and_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPS_TOKEN", "t0ken")
    text = (
        "webhooks:\n  - name: ops\n    url: https://hooks.example.com/x\n    bearer_token: {env: OPS_TOKEN}\n"
        "    priorities: [P0, P1]\n  - name: tickets\n    url: http://127.0.0.1:9000/\n"
        "    events: [opened, resolved]\n    headers: {X-Team: gpu}\n"
    )
    cfg = load_config(write(tmp_path, text))
    ops, tickets = cfg.webhooks
    assert ops.bearer_token is not None and ops.bearer_token.get_secret_value() == "t0ken"
    assert (ops.notifier_name, ops.priorities, len(ops.events)) == ("webhook:ops", ["P0", "P1"], 7)
    assert (tickets.events, tickets.headers, tickets.timeout_seconds) == (
        ["opened", "resolved"],
        {"X-Team": "gpu"},
        10.0,
    )
    assert load_config(None).webhooks == []


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        (ONE.format(url="hooks.example.com"), 3, "webhooks[0].url", "not an http(s) URL"),
        # The fix named no port of its own: it told every URL field to look like Prometheus' :9090.
        (ONE.format(url="hooks.example.com"), 3, "webhooks[0].url", "write it as http://HOST:PORT/PATH"),
        (
            ONE.format(url="http://hooks example.com/x"),
            3,
            "webhooks[0].url",
            "host 'hooks example.com' holds ' '",
        ),
        ("webhooks:\n  - url: http://x/\n", 2, "webhooks[0].name", "required field is missing"),
        (ONE.format(url="http://x/") + "    retries: 3\n", 4, "webhooks[0].retries", "unknown field"),
        (
            ONE.format(url="http://x/") + "    events: [open]\n",
            4,
            "webhooks[0].events[0]",
            "did you mean opened?",
        ),
        (
            ONE.format(url="http://x/") + "    priorities: [P4]\n",
            4,
            "webhooks[0].priorities[0]",
            "P2, P3; write",
        ),
        (ONE.format(url="http://x/") + "    events: []\n", 4, "webhooks[0].events", "at least 1"),
        (ONE.format(url="http://x/") + "    timeout_seconds: 1e9\n", 4, "webhooks[0].timeout_seconds", "120"),
        ("webhooks:\n  - name: 'on call'\n    url: http://x/\n", 2, "webhooks[0].name", "letters, digits"),
        (
            ONE.format(url="http://x/") + "    headers: {Authorization: Basic eA==}\n",
            4,
            "webhooks[0].headers",
            "set bearer_token",
        ),
        (
            ONE.format(url="http://x/") + "    headers: {X-Gpuwarden-Signature: x}\n",
            4,
            "webhooks[0].headers",
            "gpuwarden sets it",
        ),
        (
            ONE.format(url="http://x/") + "  - name: ops\n    url: http://y/\n",
            4,
            "webhooks[1].name",
            "also the name of webhooks[0]",
        ),
        (
            ONE.format(url="http://x/") + "    bearer_token: abc\n",
            4,
            "webhooks[0].bearer_token",
            "write {env: WEBHOOK_OPS_BEARER_TOKEN}",
        ),
        (ONE.format(url="http://u:pw@x/"), 3, "webhooks[0].url", "a password written into the file"),
        (
            ONE.format(url="http://x/") + "    headers: {X-Team: GPU团队}\n",
            4,
            "webhooks[0].headers",
            "X-Team: holds '团', which an HTTP header cannot carry",
        ),
        (
            ONE.format(url="http://x/") + "    headers: {X-Owner: café}\n",
            4,
            "webhooks[0].headers",
            "printable ASCII",
        ),
        (
            ONE.format(url="http://x/") + "    headers: {Transfer-Encoding: chunked}\n",
            4,
            "webhooks[0].headers",
            "Transfer-Encoding cannot be set here",
        ),
        (
            ONE.format(url="http://x/") + "    headers: {Connection: close}\n",
            4,
            "webhooks[0].headers",
            "Connection cannot be set here",
        ),
    ],
    ids=[
        *(
            "no-scheme",
            "no-scheme-fix",
            "space-in-host",
            "no-name",
            "unknown-field",
            "unknown-event",
            "unknown-priority",
            "no-events",
        ),
        *("timeout", "name-with-space", "authorization-header", "own-header", "duplicate-name"),
        *("literal-token", "literal-password", "non-latin-1-value", "non-ascii-value"),
        *("transfer-encoding", "connection"),
    ],
)
def test_a_wrong_webhook_is_refused_naming_its_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, words: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert (info.value.path, info.value.line, info.value.field) == (str(path), line, field)
    assert words in str(info.value)
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1 and f":{line}: {field}: " in " ".join(result.output.split())


def test_webhooks_from_the_environment_are_a_json_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUWARDEN_WEBHOOKS", '[{"name": "ops", "url": "http://x/", "bearer_token": "t"}]')
    [hook] = load_config(None).webhooks
    assert hook.bearer_token is not None and hook.bearer_token.get_secret_value() == "t"
    monkeypatch.setenv("GPUWARDEN_WEBHOOKS", '[{"name": "ops", "url": "x"}]')
    with pytest.raises(ConfigError, match=r"webhooks\[0\]\.url: .* \(set by GPUWARDEN_WEBHOOKS\)"):
        load_config(None)
    monkeypatch.delenv("GPUWARDEN_WEBHOOKS")
    monkeypatch.setenv("GPUWARDEN_WEBHOOKS__0__URL", "http://x/")  # pydantic-settings would ignore it
    with pytest.raises(ConfigError, match="webhooks is a list, set whole as JSON"):
        load_config(None)


def test_config_show_masks_the_token_and_the_urls_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPS_TOKEN", "t0ken-value")
    monkeypatch.setenv("OPS_URL", "https://hooks.example.com:8443/services/T0/SECRET?key=k3y")
    text = "webhooks:\n  - name: ops\n    url: {env: OPS_URL}\n    bearer_token: {env: OPS_TOKEN}\n"
    result = runner.invoke(app, ["config", "show", str(write(tmp_path, text))])
    assert result.exit_code == 0
    [hook] = json.loads(result.output)["webhooks"]
    assert hook["url"] == "https://hooks.example.com:8443/**********"
    assert hook["bearer_token"] == "**********"
    assert "t0ken-value" not in result.output and "SECRET" not in result.output and "k3y" not in result.output


def test_a_bearer_token_over_plain_http_to_another_machine_is_warned_of(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPS_TOKEN", "t")
    hooks = "webhooks:\n" + "".join(
        f"  - name: h{k}\n    url: {url}\n    bearer_token: {{env: OPS_TOKEN}}\n"
        for k, url in enumerate(
            ["http://receiver.example.com/", "https://a.example.com/", "http://127.0.0.1:9/"]
        )
    )
    result = runner.invoke(app, ["config", "validate", str(write(tmp_path, startable(monkeypatch, hooks)))])
    output = " ".join(result.output.split())
    assert result.exit_code == 0, output
    assert output.count("warning:") == 1
    assert ":3: webhooks[0].url: the bearer token goes to receiver.example.com over plain http" in output


def test_a_token_in_a_webhook_urls_query_written_into_the_file_is_warned_of_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``?api_key=...`` written into the file passed in silence (``config show`` masks it); a password in the
    URL is refused. Warned of, naming the line and what to write instead; a url given as {env: NAME}, and a
    parameter that only looks like one (``monkey=``), say nothing."""
    monkeypatch.setenv("OPS_URL", "https://b.example.com/hook?token=t0k")
    hooks = "webhooks:\n" + "".join(
        f"  - name: h{k}\n    url: {url}\n"
        for k, url in enumerate(
            [
                "https://a.example.com/hook?api_key=S3cret&x=1",
                "{env: OPS_URL}",
                "https://c.example.com/?monkey=1",
            ]
        )
    )
    result = runner.invoke(app, ["config", "validate", str(write(tmp_path, startable(monkeypatch, hooks)))])
    output = " ".join(result.output.split())
    assert result.exit_code == 0, output
    assert output.count("warning:") == 1, output
    assert ":3: webhooks[0].url: a token in the URL's query (api_key=) is written into the file" in output
    assert "bearer_token: {env: WEBHOOK_H0_BEARER_TOKEN}" in output and "url: {env: WEBHOOK_H0_URL}" in output
    assert "S3cret" not in output
    # The whole list from a variable: not in the file, as {env: NAME}
    monkeypatch.setenv("GPUWARDEN_WEBHOOKS", '[{"name": "ops", "url": "https://a.example.com/?token=t"}]')
    from_variable = runner.invoke(
        app, ["config", "validate", str(write(tmp_path, startable(monkeypatch, "")))]
    )
    assert from_variable.exit_code == 0 and "warning:" not in from_variable.output, from_variable.output


def test_a_webhook_bearer_token_no_http_client_can_send_is_refused_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sent as ``Authorization: Bearer <token>``: a non-ASCII one failed each delivery (UnicodeEncodeError)"""
    monkeypatch.setenv("OPS_TOKEN", "tökén")
    path = write(tmp_path, ONE.format(url="http://x/") + "    bearer_token: {env: OPS_TOKEN}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.field == "webhooks[0].bearer_token"
    assert "an HTTP header cannot carry" in str(info.value) and "tökén" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "url", "field"),
    [
        (
            ONE.format(url="{env: OPS_URL}"),
            "https://hooks.example.com:99999/services/T0/S3cret",
            "webhooks[0].url",
        ),
        (
            ONE.format(url="{env: OPS_URL}"),
            "https://hooks.example.com/services/T0/S3cret?key=\n",
            "webhooks[0].url",
        ),
        (
            "anomaly:\n  prometheus_url: {env: OPS_URL}\n",
            "http://reader:S3cret@prom.example:99999",
            "anomaly.prometheus_url",
        ),
        # A password holding "/", "#" or "?" (unescaped) ends the host there: the parser's own message
        # quoted the password's start as a port ("Invalid port: 'S3cret'").
        (
            "anomaly:\n  prometheus_url: {env: OPS_URL}\n",
            "http://reader:S3cret/x1@prom.example:9090",
            "anomaly.prometheus_url",
        ),
        (
            ONE.format(url="{env: OPS_URL}"),
            "https://bot:S3cret#x1@hooks.example.com/services/T0",
            "webhooks[0].url",
        ),
        # Python's repr quotes a text holding ' with " ("Invalid port: \"S3cret'x\""), and escapes a '
        # when it holds both ('S3cret\'x"y'): neither was found, and the password's start showed.
        (
            "anomaly:\n  prometheus_url: {env: OPS_URL}\n",
            "http://reader:S3cret'x/1@prom.example:9090",
            "anomaly.prometheus_url",
        ),
        (
            "anomaly:\n  prometheus_url: {env: OPS_URL}\n",
            "http://reader:S3cret'x\"y/1@prom.example:9090",
            "anomaly.prometheus_url",
        ),
    ],
    ids=[
        "webhook-bad-port",
        "webhook-control-character",
        "prometheus-bad-port",
        "prometheus-password-with-slash",
        "webhook-password-with-hash",
        "prometheus-password-with-apostrophe",
        "prometheus-password-with-both-quotes",
    ],
)
def test_a_url_that_cannot_be_used_is_refused_without_its_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, url: str, field: str
) -> None:
    """The refusal quoted the URL whole: a webhook URL's path (the README's ``{env: ONCALL_URL}`` "when the
    URL holds a credential") or a Prometheus URL's password went to the terminal, and to serve's log."""
    monkeypatch.setenv("OPS_URL", url)
    path = write(tmp_path, text)
    result = runner.invoke(app, ["config", "validate", str(path)])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and f"{field}: " in said and "is not an http(s) URL" in said, said
    assert "S3cret" not in said


@pytest.mark.parametrize(
    ("base_url", "warned"),
    [("http://slack-proxy.example.com/api/", True), ("http://127.0.0.1:8010/api/", False)],
    ids=["another-machine", "local-stand-in"],
)
def test_a_slack_bot_token_over_plain_http_to_another_machine_is_warned_of_as_a_webhooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_url: str, warned: bool
) -> None:
    """Every Web API call carries ``Authorization: Bearer xoxb-...``; a webhook's token was warned of, the bot
    token, which can read and post in the workspace, was not."""
    monkeypatch.setenv("SLACK_TEST_TOKEN", "xoxb-t")
    slack = (
        f"slack:\n  bot_token: {{env: SLACK_TEST_TOKEN}}\n  channel: C0123456789\n  base_url: {base_url}\n"
    )
    result = runner.invoke(app, ["config", "validate", str(write(tmp_path, startable(monkeypatch, slack)))])
    output = " ".join(result.output.split())
    assert result.exit_code == 0, output
    said = "slack.base_url: the bot token goes to slack-proxy.example.com over plain http"
    assert (said in output) is warned and output.count("warning:") == int(warned), output
