"""`gpuwarden incidents`, `outbox` and `inventory` at a --url where another server answers with an error: its
body told in one line (an HTML page by its title), its control characters escaped."""

from __future__ import annotations

import pytest

from gpuwarden.cli import app
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.http_stub import FixedAnswer

runner = BuiltCliRunner()

NGINX_502 = (  # nginx's own page for an upstream that is down, as it sends it
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
    b"</center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n"
)


@pytest.mark.parametrize(
    "command",
    [["incidents", "list"], ["incidents", "ack", "inc-1"], ["outbox", "list"], ["inventory", "nodes"]],
    ids=["incidents-list", "incidents-ack", "outbox-list", "inventory-nodes"],
)
def test_a_proxys_error_page_is_told_in_one_line_by_its_title(command: list[str]) -> None:
    # The page was printed whole after "error: HTTP 502: ": seven lines of HTML from nginx, fourteen from
    # Python's http.server, a web app's thousands.
    stub = FixedAnswer(502, NGINX_502)
    try:
        result = runner.invoke(app, [*command, "--url", stub.url], env={"GPUWARDEN_API_TOKEN": "t0ken"})
    finally:
        stub.close()
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1, said
    assert f"error: HTTP 502: 502 Bad Gateway (not gpuwarden's answer, from {stub.url}:" in said, said
    assert "<" not in said and "nginx/1.22.1" not in said, said


@pytest.mark.parametrize(
    ("body", "told"),
    [
        (b"first line\nsecond line\nthird line\n", "HTTP 502: first line... (not gpuwarden's answer"),
        (b"x" * 5000, "HTTP 502: " + "x" * 197 + "... (not gpuwarden's answer"),
        (b"\x1b]0;owned\x07\x1b[2Jgone", "HTTP 502: \\x1b]0;owned\\x07\\x1b[2Jgone (not gpuwarden's answer"),
        # 200 characters before escaping were 791 after; 199 and a second line were 202 with the "..."
        (b"\x1b" * 300, "HTTP 502: " + "\\x1b" * 49 + "... (not gpuwarden's answer"),
        (b"y" * 199 + b"\nsecond line", "HTTP 502: " + "y" * 197 + "... (not gpuwarden's answer"),
    ],
    ids=["text-lines", "long-line", "terminal-escapes", "long-escaped-line", "long-line-and-more"],
)
def test_another_servers_text_answer_is_told_by_its_first_line_its_controls_escaped(
    body: bytes, told: str
) -> None:
    stub = FixedAnswer(502, body)
    try:
        result = runner.invoke(app, ["incidents", "list", "--url", stub.url])
    finally:
        stub.close()
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1 and told in said, said
    assert "\x1b" not in result.stderr and "second line" not in said, said
