"""`gpuwarden loadgen --url` at something that is no inference server (gpuwarden serve, an exporter,
Prometheus, a web server) says so, and what answered there, instead of a report of 404s."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gpuwarden.cli import app
from tests.gpuwarden.cli.built_runner import BuiltCliRunner

runner = BuiltCliRunner()

SERVE_404 = json.dumps({"error": "path: no route for POST /v1/chat/completions", "field": "path"})
MODEL_404 = json.dumps({"error": {"message": "model 'nope' is not served here", "code": "model_not_found"}})
PAGE_405 = "<!DOCTYPE html><html><head><title>405 Not Allowed</title></head><body>nginx</body></html>"
# (status, Server header, content type, body) of every answer to POST
ANSWERS = {
    "serve": (404, "uvicorn", "application/json", SERVE_404),
    "prometheus": (404, None, "text/plain", "404 page not found\n"),
    "web_page": (405, "nginx", "text/html", PAGE_405),
    "model_not_found": (404, "uvicorn", "application/json", MODEL_404),
}


def _server_answering(status: int, server: str | None, kind: str, body: str) -> type[BaseHTTPRequestHandler]:
    class Answering(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            data = body.encode()
            self.send_response_only(status)
            if server is not None:
                self.send_header("Server", server)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    return Answering


@pytest.fixture
def answering(request: pytest.FixtureRequest) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _server_answering(*ANSWERS[request.param]))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("answering", "found"),
    [
        ("serve", '404 Not Found (Server: uvicorn): "path: no route for POST /v1/chat/completions"'),
        ("prometheus", '404 Not Found: "404 page not found"'),
        ("web_page", '405 Method Not Allowed (Server: nginx): "405 Not Allowed"'),
    ],
    indirect=["answering"],
    ids=["serve", "prometheus", "web_page"],
)
def test_a_url_that_is_no_inference_server_is_said_to_be_none_with_what_answered(
    answering: str, found: str
) -> None:
    result = runner.invoke(app, ["loadgen", "--url", answering, "--requests", "2", "-q"])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1, result.output
    assert f"--url {answering} is not an OpenAI-compatible inference server" in said
    assert f"it answered {found}." in said
    assert "gpuwarden inference-server" in said
    assert result.stdout == ""  # no report of 404s


@pytest.mark.parametrize("answering", ["model_not_found"], indirect=True)
def test_an_inference_servers_own_404_is_reported_as_a_failed_run(answering: str) -> None:
    result = runner.invoke(app, ["loadgen", "--url", answering, "--requests", "2", "-q", "--model", "nope"])
    assert result.exit_code == 1, result.output
    assert "not an OpenAI-compatible inference server" not in result.output
    assert "failed 2 (404 2)" in result.stdout
    assert "model 'nope' is not served here" in result.stdout
