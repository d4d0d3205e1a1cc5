"""A real Prometheus scrapes ``gpuwarden exporter --web.config.file`` over TLS with basic auth, as it
scrapes node_exporter or dcgm-exporter with the same file: up with the right password, down with 401 with a
wrong one."""

from __future__ import annotations

import os
import ssl
import subprocess
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest

from tests.integration import http_probe
from tests.integration.gpuwarden_server import gpuwarden_binary, simulated_exporter_argv
from tests.integration.https_server import running_https
from tests.integration.prometheus_queries import query, wait_for
from tests.integration.servers import free_port, prometheus_argv, running
from tests.tls_certs import client_cert_with_sans, make_certs

pytestmark = pytest.mark.integration


def _job(name: str, port: int, ca: Path, password: str) -> str:
    return (
        f"  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n"
        f"    basic_auth:\n      username: prometheus\n      password: {password}\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    )


def test_prometheus_scrapes_the_exporter_over_tls_with_basic_auth_and_a_wrong_password_gets_401(
    tmp_path: Path,
) -> None:
    certs = make_certs(tmp_path / "certs")
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {certs.cert}\n  key_file: {certs.key}\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    port, prom_port = free_port(), free_port()
    prom = f"http://127.0.0.1:{prom_port}"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n"
        + _job("right", port, certs.ca, "s3cret")
        + _job("wrong", port, certs.ca, "guess")
    )
    argv = [*simulated_exporter_argv("1x2", port), "--web.config.file", str(web)]
    url = f"https://127.0.0.1:{port}/metrics"
    with (
        running_https(
            argv,
            url,
            tmp_path / "exporter.log",
            verify=ssl.create_default_context(cafile=certs.ca),
            auth=("prometheus", "s3cret"),
        ),
        running(prometheus_argv(config, prom_port), f"{prom}/-/ready", tmp_path / "prometheus.log"),
    ):
        wait_for("both GPUs in Prometheus", lambda: len(query(prom, "gpuwarden_gpu_up == 1")) == 2, 30)
        wait_for("the wrong password's target scraped", lambda: query(prom, 'up{job="wrong"}') != [], 30)
        assert [r["value"][1] for r in query(prom, 'up{job="right"}')] == ["1"]
        assert [r["value"][1] for r in query(prom, 'up{job="wrong"}')] == ["0"]
        targets = http_probe.get(f"{prom}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        errors = {t["labels"]["job"]: t["lastError"] for t in targets}
        assert errors["right"] == ""
        assert "401" in errors["wrong"], errors
        assert {r["metric"]["job"] for r in query(prom, "gpuwarden_gpu_up")} == {"right"}
        sim = [gpuwarden_binary(), "sim", "faults", "--url"]
        env = {**os.environ, "SSL_CERT_FILE": str(certs.ca)}
        options: dict[str, Any] = {"env": env, "capture_output": True, "text": True}
        refused = subprocess.run([*sim, f"https://localhost:{port}"], check=False, **options)
        assert refused.returncode == 1
        assert "the server asks for basic auth" in " ".join(refused.stderr.split())
        listed = subprocess.run([*sim, f"https://prometheus:s3cret@localhost:{port}"], check=False, **options)
        assert listed.returncode == 0, listed.stderr
        # Plain HTTP reaches no metrics: the port speaks TLS only, and says so as Go's servers say it.
        plain = http_probe.get(url.replace("https://", "http://"), timeout=5)
        assert plain.status_code == 400
        assert plain.text == "Client sent an HTTP request to an HTTPS server.\n"
        assert "gpuwarden_gpu_up" not in plain.text


def test_the_exporter_lets_in_a_client_certificate_only_with_a_san_in_client_allowed_sans(
    tmp_path: Path,
) -> None:
    certs = make_certs(tmp_path / "certs")
    allowed = client_cert_with_sans(certs.ca.parent, "prometheus", "DNS:prometheus.monitoring.svc")
    other = client_cert_with_sans(certs.ca.parent, "grafana", "DNS:grafana.monitoring.svc")
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {certs.cert}\n  key_file: {certs.key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {certs.ca}\n"
        "  client_allowed_sans: [prometheus.monitoring.svc]\n"
    )

    def client(cert: tuple[Path, Path]) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=certs.ca)
        context.load_cert_chain(*cert)
        return context

    port = free_port()
    url = f"https://localhost:{port}/metrics"
    log = tmp_path / "exporter.log"
    argv = [*simulated_exporter_argv("1x1", port), "--web.config.file", str(web)]
    with running_https(argv, url, log, verify=client(allowed)):
        with httpx.Client(verify=client(allowed), timeout=10) as prometheus:
            assert "gpuwarden_gpu_up" in prometheus.get(url).text
        for refused in (other, (certs.client_cert, certs.client_key)):  # another SAN; none
            with httpx.Client(verify=client(refused), timeout=10) as grafana, pytest.raises(httpx.HTTPError):
                grafana.get(url)
        assert "none of its SANs (grafana.monitoring.svc) is in client_allowed_sans" in log.read_text()
