"""`gpuwarden incidents` reaching serve: URLs and tokens it refuses or cannot send, the errors serve or
another server answers, timeouts, refused connections and TLS."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from alerting.engine import IncidentEngine
from gpuwarden.api import create_app
from gpuwarden.cli import app
from gpuwarden.clock import FakeClock
from gpuwarden.config import ApiConfig
from tests.gpuwarden.api_client import TestClient, route_httpx
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.http_stub import FixedAnswer, LocalServer, QuietHandler
from tests.integration.servers import free_port
from tests.migrated_store import migrated_sqlite

runner = BuiltCliRunner()

# A fault the exporter would take: one it would refuse (no --node) is refused before its URL is looked at.
INJECT = ["sim", "inject", "xid", "--node", "node-01", "--gpu", "0", "--xid", "79"]

BAD_URLS = {
    "ipv6-unclosed": "http://[::1",
    # httpx takes these (it escapes a bracket in the host); urllib's urlsplit raised "Invalid IPv6 URL"
    "bracket-opened-no-port": "http://[bad",
    "bracket-closed": "http://a]b",
    "newline": "http://127.0.0.1:1\n",
    "trailing-blank": "http://127.0.0.1:1 ",  # was sent: "cannot connect to http://127.0.0.1:1 :"
    "hostname-300": "http://" + "a" * 300 + ".com",  # the idna codec refuses labels over 63
    "punycode-invalid": "http://xn--a/",  # httpx's decoding of the host raised idna's error: a traceback
    "port-99999": "http://127.0.0.1:99999",
    "ftp": "ftp://127.0.0.1",
    "query": "http://127.0.0.1:9?x=1",  # each command adds its path after it: /?x=1/api/..., a 404
    "fragment": "http://127.0.0.1:9/#top",
}


@pytest.mark.parametrize("url", BAD_URLS.values(), ids=BAD_URLS.keys())
@pytest.mark.parametrize(
    "argv",
    [
        ["incidents", "list"],
        ["incidents", "ack", "inc-1"],
        ["inventory", "nodes"],
        ["outbox", "list"],
        INJECT,
        ["loadgen"],
    ],
    ids=["list", "ack", "inventory", "outbox", "sim-inject", "loadgen"],
)
def test_a_malformed_url_is_named_with_exit_2_not_a_traceback(argv: list[str], url: str) -> None:
    result = runner.invoke(app, [*argv, "--url", url])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    said = " ".join(result.stderr.split())
    assert f"error: --url {url!r}: not a valid URL (" in said, said


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://gw:S3cret@127.0.0.1:9", "http://gw:***@127.0.0.1:9"),  # cannot connect (exit 1)
        ("http://127.0.0.1:9/?token=S3cret", "'http://127.0.0.1:9/?token=***': not a valid URL"),  # exit 2
    ],
    ids=["unreachable-with-a-password", "refused-with-a-token"],
)
@pytest.mark.parametrize(
    "argv",
    # loadgen's one request: its default 100 at 10 a second took 10 s to find that none could connect
    [["incidents", "list"], ["outbox", "list"], INJECT, ["loadgen", "--requests", "1"]],
    ids=["incidents", "outbox", "sim-inject", "loadgen"],
)
def test_a_url_the_cli_cannot_use_is_named_without_its_credential(
    argv: list[str], url: str, shown: str
) -> None:
    """--url (GPUWARDEN_URL: serve behind a proxy that takes basic auth or a token) was said whole."""
    result = runner.invoke(app, [*argv, "--url", url])
    said = " ".join(result.stderr.split())
    assert result.exit_code in (1, 2) and "S3cret" not in said, said
    assert shown in said, said


@pytest.mark.parametrize("url", [" http://127.0.0.1:1", "http://127.0.0.1:1 "], ids=["before", "after"])
def test_a_url_with_a_blank_around_it_is_refused_saying_so(url: str) -> None:
    """Before it, the refusal said "it must start with http:// or https://", which it seems to; after it,
    the request was sent and failed naming a port with a space in it."""
    result = runner.invoke(app, ["incidents", "list", "--url", url])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "not a valid URL (a blank before or after it; remove it)" in said, said


def test_a_malformed_url_from_gpuwarden_url_is_named_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUWARDEN_URL", "http://[::1")
    result = runner.invoke(app, ["incidents", "list"])
    assert result.exit_code == 2 and "not a valid URL" in result.stderr, result.output


def _refused_ack() -> str:
    """What ``incidents ack`` says on stderr (exit 1) when serve answers its 401."""
    stub = FixedAnswer(401, b'{"error": "missing or wrong bearer token"}')
    try:
        result = runner.invoke(app, ["incidents", "ack", "inc-1", "--url", stub.url])
    finally:
        stub.close()
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1 and "HTTP 401: missing or wrong bearer token" in said, said
    return said


@pytest.mark.parametrize("token", [None, ""], ids=["unset", "empty"])
def test_a_401_without_a_token_says_gpuwarden_api_token_is_not_set(
    monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    if token is None:
        monkeypatch.delenv("GPUWARDEN_API_TOKEN", raising=False)
    else:
        monkeypatch.setenv("GPUWARDEN_API_TOKEN", token)
    said = _refused_ack()
    assert f"GPUWARDEN_API_TOKEN is {'empty' if token == '' else 'not set'}" in said, said


def test_a_401_with_a_token_says_it_is_not_the_one_serve_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "stale")
    said = _refused_ack()
    assert "the GPUWARDEN_API_TOKEN sent is not the one this serve takes" in said and "stale" not in said, (
        said
    )


def test_a_token_that_cannot_be_sent_is_named_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "GPUWARDEN_API_TOKEN", "t\u00f6ken"
    )  # headers are ASCII: httpx raised UnicodeEncodeError
    result = runner.invoke(app, ["incidents", "ack", "inc-1", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "GPUWARDEN_API_TOKEN" in result.stderr


@pytest.mark.parametrize(
    "token", ["secretvalue ", " secretvalue", "secretvalue\n"], ids=["after", "before", "newline"]
)
@pytest.mark.parametrize(
    "command", [["incidents", "list"], ["incidents", "ack", "inc-1"]], ids=["list", "ack"]
)
def test_a_token_with_blanks_around_it_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, token: str, command: list[str]
) -> None:
    # h11 refused the header: "cannot reach" a serve that was up, exit 1, the token printed after it.
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", token)
    result = runner.invoke(app, [*command, "--url", "http://127.0.0.1:9"])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "GPUWARDEN_API_TOKEN begins or ends with a space or a newline" in said, said
    assert "secretvalue" not in result.output + result.stderr


@pytest.mark.parametrize("body", [b"", b"Not Found", b"<html>404</html>"], ids=["empty", "text", "html"])
def test_an_error_that_is_not_gpuwardens_asks_whether_url_is_a_gpuwarden_serve(body: bytes) -> None:
    stub = FixedAnswer(404, body)
    try:
        result = runner.invoke(app, ["incidents", "show", "inc-1", "--url", stub.url])
    finally:
        stub.close()
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1 and "HTTP 404" in said and "is --url a gpuwarden serve?" in said, said


def test_gpuwardens_own_404_names_what_is_missing_without_the_hint() -> None:
    stub = FixedAnswer(404, b'{"error": "no incident inc-1", "field": "incident_id"}')
    try:
        result = runner.invoke(app, ["incidents", "show", "inc-1", "--url", stub.url])
    finally:
        stub.close()
    said = " ".join(result.stderr.split())
    assert "HTTP 404: no incident inc-1" in said and "--url" not in said, said


def test_serves_alertmanager_shaped_404_is_read_as_its_own_not_printed_raw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --url with Alertmanager's /api/v2 on it: serve's 404 there is go-openapi's {"code", "message"}; it was
    # printed as raw JSON and called "not gpuwarden's answer".
    sql = migrated_sqlite(tmp_path / "cli.db")
    url = "http://gpuwarden.test"
    with TestClient(create_app(IncidentEngine(sql, FakeClock()), ApiConfig()), base_url=url) as client:
        route_httpx(client, url, monkeypatch)
        result = runner.invoke(app, ["incidents", "show", "inc-1", "--url", f"{url}/api/v2"])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1, said
    assert "HTTP 404: path: no route for GET /api/v2/api/v1/incidents/inc-1" in said, said
    assert '"code"' not in said and "not gpuwarden's answer" not in said, said


@pytest.mark.parametrize("given", ["--url", "GPUWARDEN_URL"])
def test_serves_no_route_under_a_url_with_a_path_names_the_url_and_its_base_to_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    # `--url http://host:8080/foo` said "HTTP 404: path: no route for GET /foo/api/v1/incidents": neither
    # the URL nor what to give instead.
    url = "http://gpuwarden.test"
    argv = ["incidents", "list"] + (["--url", f"{url}/foo/"] if given == "--url" else [])
    if given == "GPUWARDEN_URL":
        monkeypatch.setenv("GPUWARDEN_URL", f"{url}/foo/")
    sql = migrated_sqlite(tmp_path / "cli.db")
    with TestClient(create_app(IncidentEngine(sql, FakeClock()), ApiConfig()), base_url=url) as client:
        route_httpx(client, url, monkeypatch)
        result = runner.invoke(app, argv)
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1, said
    assert f"{given} {url}/foo/ is not serve's base URL: give {url}, without the path" in said, said


def test_serves_no_route_behind_a_proxy_stripping_a_prefix_names_the_base_with_the_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Behind a proxy serving it under /gpuwarden, `--url http://proxy/gpuwarden/extra` was told to give
    # http://proxy "without the path", where the proxy serves nothing of serve's.
    proxy = "http://proxy.test/gpuwarden"
    sql = migrated_sqlite(tmp_path / "cli.db")
    with TestClient(create_app(IncidentEngine(sql, FakeClock()), ApiConfig())) as client:
        route_httpx(client, proxy, monkeypatch)  # what the proxy does: /gpuwarden/x reaches serve as /x
        result = runner.invoke(app, ["incidents", "list", "--url", f"{proxy}/extra"])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1, said
    assert "no route for GET /extra/api/v1/incidents" in said, said
    assert f"--url {proxy}/extra is not serve's base URL: give {proxy}, without the rest of the path" in said


@pytest.mark.parametrize(
    ("status", "body", "told"),
    [
        (
            503,
            b'{"error": "internal error; the store could not be read, retry later"}',
            "from serve at {}; its log says more",
        ),
        (500, b'{"error": "boom"}', "from serve at {}; its log says more"),
        (
            502,
            b"<html>502 Bad Gateway</html>",
            "not gpuwarden's answer, from {}: is --url a gpuwarden serve?",
        ),
    ],
    ids=["serve-503", "serve-500", "proxy-502"],
)
def test_a_server_error_names_the_url_it_came_from(status: int, body: bytes, told: str) -> None:
    # "error: HTTP 500: boom" and "error: HTTP 502: <html>..." named no URL: which serve, or which proxy.
    stub = FixedAnswer(status, body)
    try:
        result = runner.invoke(app, ["outbox", "list", "--url", stub.url])
    finally:
        stub.close()
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1 and f"HTTP {status}: " in said and told.format(stub.url) in said, said
    assert said.count("error:") == 1 and "Traceback" not in result.output, said


def test_another_servers_code_and_message_still_asks_whether_url_is_a_gpuwarden_serve() -> None:
    stub = FixedAnswer(404, b'{"code": 404, "message": "path /api/v1/incidents/inc-1 was not found"}')
    try:  # a real Alertmanager's 404: the same shape, without serve's field header
        result = runner.invoke(app, ["incidents", "show", "inc-1", "--url", stub.url])
    finally:
        stub.close()
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1 and "is --url a gpuwarden serve?" in said, said


def test_a_server_that_takes_the_connection_but_does_not_answer_is_a_timeout_not_unreachable() -> None:
    """The probe's `incidents list` during a store outage said "cannot reach ...: timed out": the server was
    up, its read waited 10 s and the CLI gave up at 10 s. A timeout now says so and honours the option."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", free_port()))
        listening.listen(8)  # the kernel accepts connections; nobody reads or answers
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        result = runner.invoke(app, ["incidents", "--request-timeout", "0.2", "list", "--url", url])
    assert result.exit_code == 1
    said = " ".join(result.stderr.split())
    assert f"timed out after 0.2 s waiting for an answer from {url}" in said
    assert "cannot" not in said


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["incidents", "list", "--request-timeout", "0.1"], id="incidents-list-after"),
        pytest.param(["incidents", "ack", "inc-1", "--request-timeout", "0.1"], id="incidents-ack-after"),
        pytest.param(
            ["incidents", "--request-timeout", "9", "show", "i", "--request-timeout", "0.1"], id="both"
        ),
        pytest.param(["inventory", "nodes", "--request-timeout", "0.1"], id="inventory-after"),
        pytest.param(["inventory", "--request-timeout", "0.1", "export"], id="inventory-before"),
        pytest.param(["outbox", "list", "--request-timeout", "0.1"], id="outbox-after"),
        pytest.param(["outbox", "--request-timeout", "0.1", "retry"], id="outbox-before"),
        pytest.param(
            ["outbox", "discard", "--notifier", "n", "--yes", "--request-timeout", "0.1"], id="discard"
        ),
    ],
)
def test_request_timeout_is_taken_after_the_command_and_by_every_command_that_asks_serve(
    argv: list[str],
) -> None:
    """It was taken only before the command (``incidents --request-timeout 5 list``), and by no inventory or
    outbox command: ``incidents list --request-timeout 5``, as kubectl takes it, was "No such option"."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", free_port()))
        listening.listen(8)  # the kernel accepts connections; nobody reads or answers
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        result = runner.invoke(app, [*argv, "--url", url])
    assert result.exit_code == 1, result.output
    assert f"timed out after 0.1 s waiting for an answer from {url}" in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        pytest.param(["incidents", "list", "--request-timeout", "1e10"], {}, id="after"),
        pytest.param(["incidents", "--request-timeout", "inf", "list"], {}, id="before-inf"),
        pytest.param(["outbox", "list", "--request-timeout", "nan"], {}, id="nan"),
        pytest.param(["incidents", "list"], {"GPUWARDEN_REQUEST_TIMEOUT": "inf"}, id="env"),
    ],
)
def test_a_request_timeout_no_socket_can_wait_is_a_bad_option(argv: list[str], env: dict[str, str]) -> None:
    """``--request-timeout 1e10`` (or ``inf``) printed a Python traceback (OverflowError from the socket's
    timeout) and exited 1, as if serve were unreachable; ``nan`` said it must be at least 0.1."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", free_port()))
        listening.listen(8)
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        result = runner.invoke(app, [*argv, "--url", url], env=env)
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2, result.output
    assert "--request-timeout" in said and "86400" in said, said
    assert "Traceback" not in result.output


def test_a_refused_connection_says_cannot_connect() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", free_port()))  # bound, not listening: connections are refused
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        result = runner.invoke(app, ["incidents", "list", "--url", url])
    assert result.exit_code == 1
    assert f"cannot connect to {url}" in " ".join(result.stderr.split())


def test_https_to_a_plain_http_serve_says_to_use_http() -> None:
    # OpenSSL's "WRONG_VERSION_NUMBER" alone did not tell an operator that serve has no TLS of its own.
    server = FixedAnswer(200, b"[]")
    try:
        url = server.url.replace("http://", "https://")
        result = runner.invoke(app, ["incidents", "list", "--url", url])
    finally:
        server.close()
    assert result.exit_code == 1, result.output
    assert "the server speaks plain HTTP: use http://" in " ".join(result.stderr.split()), result.stderr


@pytest.mark.parametrize(
    ("scheme", "proxy", "loads"),
    [("http", None, False), ("https", None, True), ("http", "https://proxy.invalid:3128", True)],
    ids=["plain-http", "https", "http-through-a-proxy"],
)
def test_a_plain_http_request_loads_no_ca_bundle_unless_tls_may_be_spoken(
    monkeypatch: pytest.MonkeyPatch, scheme: str, proxy: str | None, loads: bool
) -> None:
    # Loading it cost ~60 ms of CPU per command, for a connection that never handshakes.
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    if proxy:
        monkeypatch.setenv("http_proxy", proxy)
    loaded: list[object] = []
    real = ssl.SSLContext.load_verify_locations
    monkeypatch.setattr(
        ssl.SSLContext, "load_verify_locations", lambda self, *a, **k: loaded.append(a) or real(self, *a, **k)
    )
    server = FixedAnswer(200, b"[]")
    try:
        result = runner.invoke(app, ["incidents", "list", "--url", server.url.replace("http", scheme, 1)])
    finally:
        server.close()
    assert bool(loaded) is loads, result.output
    if scheme == "http" and not proxy:
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("output", ["table", "json"])
def test_a_listing_serve_answered_while_still_applying_alerts_says_it_may_be_behind(output: str) -> None:
    # serve waits 10 s for what it took to be applied, then answers with X-Gpuwarden-Ingest-Lag: a listing of
    # 4 incidents while 1,255 were coming said nothing of it.
    class Lagging(QuietHandler):
        def do_GET(self) -> None:
            body = b"[]"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Total-Count", "0")
            self.send_header("X-Gpuwarden-Ingest-Lag", "831204")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = LocalServer(Lagging)
    try:
        result = runner.invoke(app, ["incidents", "list", "--url", server.url, "-o", output])
    finally:
        server.close()
    said = " ".join(result.stderr.split())
    assert result.exit_code == 0, result.output
    assert "warning: serve was still applying 831204 bytes of alerts it had taken; this answer may be" in said
    if output == "json":
        assert result.stdout.strip() == "[]"  # the warning stays off the document


@pytest.mark.parametrize(
    ("argv", "warned"),
    [
        pytest.param(["incidents", "note", "inc-1", "reseated the PSU"], True, id="note"),
        pytest.param(["incidents", "ack", "inc-1"], True, id="ack"),
        pytest.param(["outbox", "retry"], True, id="outbox-retry"),
        pytest.param(["incidents", "show", "inc-1"], False, id="show"),
    ],
)
def test_a_write_that_timed_out_says_serve_may_still_make_it_before_it_is_sent_again(
    argv: list[str], warned: bool
) -> None:
    # 30 operators' notes at once on a busy serve: one CLI gave up at 30 s, serve stored the note after, and
    # the message said only to raise --request-timeout: sent again, the note was on the timeline twice.
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", free_port()))
        listening.listen(8)  # the kernel accepts connections; nobody reads or answers
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        result = runner.invoke(app, [*argv, "--request-timeout", "0.1", "--url", url])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1 and "timed out after 0.1 s" in said, said
    assert ("serve may still carry it out" in said) is warned, said
    assert ("before sending it again, or a note is stored twice" in said) is warned, said


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://gpuwarden.test:8080", True),
        ("http://10.0.0.7:8080", True),
        ("https://gpuwarden.test", False),
        ("http://localhost:8080", False),
        ("http://127.0.0.1:8080", False),
        ("http://[::1]:8080", False),
    ],
    ids=["plain-http-host", "plain-http-address", "https", "localhost", "loopback-v4", "loopback-v6"],
)
def test_a_token_sent_over_plain_http_to_another_machine_is_warned_of_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, warned: bool
) -> None:
    """config validate warned of Slack's and the webhooks' tokens over plain http; the CLI sent serve's write
    token so without a word."""
    monkeypatch.setattr("gpuwarden.cli.api_requests._WARNED_HOSTS", set(), raising=False)
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "s3cret-token-of-serve-0123456789")
    sql = migrated_sqlite(tmp_path / "cli.db")
    with TestClient(create_app(IncidentEngine(sql, FakeClock()), ApiConfig()), base_url=url) as client:
        route_httpx(client, url, monkeypatch)
        result = runner.invoke(app, ["incidents", "list", "--url", url])
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "plain http" in line]
    if not warned:
        assert lines == [], lines
        return
    host = urlsplit(url).hostname
    assert lines == [
        f"warning: GPUWARDEN_API_TOKEN goes to {host} over plain http, readable on the way; use an https"
        " --url (serve with --web.config.file, or a TLS proxy in front of it), or run this on serve's machine"
        " with a localhost --url"
    ]
