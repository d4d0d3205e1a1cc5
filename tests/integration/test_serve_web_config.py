"""``gpuwarden serve --web.config.file``: a real Prometheus delivers alerts to it over TLS with its token,
the CLI reads them over https trusting the CA through ``SSL_CERT_FILE``, amtool with basic auth, and a
request with neither the token nor a basic-auth password is refused 401."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml

from tests.integration.gpuwarden_server import TOKEN, gpuwarden_binary
from tests.integration.https_server import running_https
from tests.integration.prometheus_queries import wait_for
from tests.integration.servers import free_port, prometheus_argv, require_binary, running
from tests.tls_certs import make_certs

pytestmark = pytest.mark.integration

RULES = {
    "groups": [
        {
            "name": "gpu",
            "interval": "1s",
            "rules": [
                {"alert": "GPULost", "expr": "vector(1) > 0", "labels": {"Hostname": "n05", "gpu": "2"}}
            ],
        }
    ]
}


def _prometheus_config(tmp_path: Path, port: int, ca: Path) -> Path:
    """Prometheus sending its rule's alert to serve over https, trusting ``ca``, with serve's token."""
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(RULES))
    alertmanager = {
        "api_version": "v2",
        "scheme": "https",
        "tls_config": {"ca_file": str(ca)},
        "authorization": {"type": "Bearer", "credentials": TOKEN},
        "static_configs": [{"targets": [f"localhost:{port}"]}],
    }
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"evaluation_interval": "1s", "scrape_interval": "15s"},
                "rule_files": [str(rules)],
                "alerting": {"alertmanagers": [alertmanager]},
            }
        )
    )
    return config


def _cli(url: str, **env: str) -> subprocess.CompletedProcess[str]:
    unset = ("SSL_CERT_FILE", "SSL_CERT_DIR", "GPUWARDEN_API_TOKEN")
    clean = {k: v for k, v in os.environ.items() if k not in unset}
    argv = [gpuwarden_binary(), "incidents", "list", "--url", url, "-o", "json"]
    return subprocess.run(argv, env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False)


def test_prometheus_and_the_cli_reach_serve_over_tls_and_a_request_without_credentials_gets_401(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certs = make_certs(tmp_path / "certs")
    web = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    web.write_text(
        f"tls_server_config:\n  cert_file: {certs.cert}\n  key_file: {certs.key}\n"
        f"http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
        f"basic_auth_users:\n  ops: '{hashed}'\n"
    )
    port, prom_port = free_port(), free_port()
    serve_argv = [
        gpuwarden_binary(), "serve", "--port", str(port), "--db", str(tmp_path / "gw.db"),
        "--web.config.file", str(web),
    ]  # fmt: skip
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", TOKEN)  # serve's, inherited
    url = f"https://localhost:{port}"
    trusted = ssl.create_default_context(cafile=certs.ca)
    prom_argv = [*prometheus_argv(_prometheus_config(tmp_path, port, certs.ca), prom_port)]
    prom_argv.append("--rules.alert.resend-delay=1s")  # a first send racing discovery: again in 1 s
    ready = f"http://127.0.0.1:{prom_port}/-/ready"
    with (
        running_https(
            serve_argv, f"{url}/-/ready", tmp_path / "serve.log", verify=trusted, auth=("ops", "s3cret")
        ),
        running(prom_argv, ready, tmp_path / "prometheus.log"),
    ):
        listed = _cli(url, SSL_CERT_FILE=str(certs.ca), GPUWARDEN_API_TOKEN=TOKEN)
        assert listed.returncode == 0, listed.stderr
        incidents: list[dict[str, Any]] = []

        def delivered() -> bool:
            incidents[:] = json.loads(
                _cli(url, SSL_CERT_FILE=str(certs.ca), GPUWARDEN_API_TOKEN=TOKEN).stdout
            )
            return bool(incidents)

        wait_for("Prometheus' alert as an incident, read by the CLI over https", delivered, 60)
        assert [i["alert_count"] for i in incidents] == [1]
        # amtool, with exporter-toolkit's client file: basic auth over TLS reads what Prometheus sent.
        http_config = tmp_path / "amtool.yml"
        http_config.write_text(
            f"basic_auth:\n  username: ops\n  password: s3cret\ntls_config:\n  ca_file: {certs.ca}\n"
        )
        argv = [require_binary("amtool"), f"--alertmanager.url={url}", f"--http.config.file={http_config}"]
        queried = subprocess.run(
            [*argv, "alert", "query", "-o", "json"], capture_output=True, text=True, timeout=30, check=False
        )
        assert queried.returncode == 0, queried.stderr
        assert [a["labels"]["alertname"] for a in json.loads(queried.stdout)] == ["GPULost"]
        untrusted = _cli(url, GPUWARDEN_API_TOKEN=TOKEN)
        assert untrusted.returncode != 0
        assert "export SSL_CERT_FILE" in " ".join(untrusted.stderr.split())

        with httpx.Client(verify=trusted, timeout=5) as client:
            refused = client.get(f"{url}/api/v1/incidents")
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Basic")
            assert refused.headers["x-content-type-options"] == "nosniff"
            wrong_token = {"Authorization": "Bearer not-the-token"}
            assert client.get(f"{url}/-/healthy", headers=wrong_token).status_code == 401
            ops = client.get(f"{url}/api/v1/incidents", auth=("ops", "s3cret"))
            assert ops.status_code == 200
            assert [i["alert_count"] for i in ops.json()] == [1]
