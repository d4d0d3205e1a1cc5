"""``gpuwarden inference-server --web.config.file``: its /metrics and completions over TLS, behind basic
auth, as the exporter's."""

from __future__ import annotations

import ssl
from pathlib import Path

import bcrypt
import httpx
import pytest

from tests.integration.gpuwarden_server import gpuwarden_binary
from tests.integration.https_server import running_https
from tests.integration.servers import free_port
from tests.tls_certs import make_certs

pytestmark = pytest.mark.integration


def test_the_inference_server_serves_over_tls_to_the_right_password_only(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    web = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    web.write_text(
        f"tls_server_config:\n  cert_file: {certs.cert}\n  key_file: {certs.key}\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    port = free_port()
    argv = [gpuwarden_binary(), "inference-server", "--port", str(port), "--web.config.file", str(web)]
    url = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=certs.ca)
    auth = ("prometheus", "s3cret")
    with (
        running_https(argv, f"{url}/metrics", tmp_path / "inference.log", verify=trusted, auth=auth),
        httpx.Client(verify=trusted, timeout=30) as client,
    ):
        assert client.get(f"{url}/metrics").status_code == 401
        assert client.get(f"{url}/metrics", auth=("prometheus", "guess")).status_code == 401
        body = {"model": "gpuwarden-toy-1", "prompt": "hello", "max_tokens": 4}
        assert client.post(f"{url}/v1/completions", json=body).status_code == 401
        answer = client.post(f"{url}/v1/completions", json=body, auth=auth)
        assert answer.status_code == 200, answer.text
        assert "inference server on https://" in (tmp_path / "inference.log").read_text()
