"""The Kubernetes inventory's credentials: a token or client certificate read again from the kubeconfig when
the API refuses it, the cluster's CA read again when the API's certificate does not verify, and a token sent
without the newline a token file ends with."""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.config import incluster_config

from gpuwarden.cli.inventories import kubernetes_inventory
from gpuwarden.clock import SystemClock
from gpuwarden.config import KubernetesInventoryConfig
from gpuwarden.errors import SourceError
from tests.http_stub import LocalServer, QuietHandler
from tests.tls_certs import client_cert_with_sans, make_certs

NODE = {
    "metadata": {"name": "g1"},
    "status": {
        "capacity": {"nvidia.com/gpu": "8"},
        "allocatable": {"nvidia.com/gpu": "8"},
        "conditions": [{"type": "Ready", "status": "True"}],
    },
}


def _answer(handler: QuietHandler, known: bool) -> None:
    """One GPU node to a request the API knows, a 401 ``Status`` to any other."""
    status, body = 200, {"kind": "List", "metadata": {}, "items": []}
    if not known:
        status = 401
        body = {"kind": "Status", "code": 401, "reason": "Unauthorized", "message": "Unauthorized"}
    elif handler.path.startswith("/api/v1/nodes"):
        body["items"] = [NODE]
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class TokenApi(LocalServer):
    """An API that lists one GPU node to requests bearing ``token`` and answers 401 to any other, as an API
    server does once a token has expired; it remembers each request's ``Authorization``."""

    def __init__(self, token: str) -> None:
        stub = self
        self.token = token
        self.authorizations: list[str | None] = []

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                said = self.headers.get("Authorization")
                stub.authorizations.append(said)
                _answer(self, said == f"Bearer {stub.token}")

        super().__init__(Handler)


def _kubeconfig(tmp_path: Path, url: str, user: dict[str, Any]) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": url}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "renewed_in",
    ["token_file", "kubeconfig"],
    ids=["a projected token file rotated", "the kubeconfig rewritten by the cloud's CLI"],
)
def test_a_token_renewed_in_its_file_is_used_once_the_api_refuses_the_old_one(
    tmp_path: Path, renewed_in: str
) -> None:
    # The client read the token once, when serve started: once it expired, every refresh was refused (401)
    # until serve restarted, though the file already held the new one.
    api = TokenApi("old")
    token_file = tmp_path / "token"
    token_file.write_text("old")
    user = {"tokenFile": str(token_file)} if renewed_in == "token_file" else {"token": "old"}
    kubeconfig = _kubeconfig(tmp_path, api.url, user)
    reader = kubernetes_inventory(
        KubernetesInventoryConfig(cluster="k1", kubeconfig=str(kubeconfig)), SystemClock()
    )
    try:
        assert [n.name for n in reader.read().node_list] == ["g1"]
        api.token = "new"  # the old token expired
        api.authorizations.clear()
        with pytest.raises(SourceError, match="HTTP 401"):
            reader.read()  # nothing renewed yet: the read fails, and is not tried again and again
        assert api.authorizations == ["Bearer old"]
        if renewed_in == "token_file":
            token_file.write_text("new")
        else:
            _kubeconfig(tmp_path, api.url, {"token": "new"})
        assert [n.name for n in reader.read().node_list] == ["g1"]
        assert api.authorizations[-1] == "Bearer new"
    finally:
        reader.close()
        api.close()


def test_a_token_file_that_ends_with_a_newline_is_sent_without_it(tmp_path: Path) -> None:
    # `kubectl create token sa > token` writes the token and a newline; kubectl trims it, the official
    # client sent it as is and urllib3 refused the header ("Invalid header value") at every read.
    api = TokenApi("abc")
    token_file = tmp_path / "token"
    token_file.write_text("abc\n")
    kubeconfig = _kubeconfig(tmp_path, api.url, {"tokenFile": str(token_file)})
    reader = kubernetes_inventory(
        KubernetesInventoryConfig(cluster="k1", kubeconfig=str(kubeconfig)), SystemClock()
    )
    try:
        assert [n.name for n in reader.read().node_list] == ["g1"]
        assert set(api.authorizations) == {"Bearer abc"}
    finally:
        reader.close()
        api.close()


class CertificateApi(LocalServer):
    """An HTTPS API that knows one client certificate (by its subject alternative names, ``sans``) and
    answers 401 to any other, as an API server does once a client certificate has expired."""

    def __init__(self, cert: Path, key: Path, ca: Path) -> None:
        stub = self
        self.sans: tuple[tuple[str, str], ...] = ()
        self.seen: list[tuple[tuple[str, str], ...] | None] = []  # each request's, None: no certificate

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                peer = self.connection.getpeercert()  # type: ignore[attr-defined]
                sans = tuple(peer.get("subjectAltName", ())) if peer else None
                stub.seen.append(sans)
                _answer(self, sans == stub.sans)

        super().__init__(Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_OPTIONAL  # as the API server: a certificate, if any, is checked
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = self.url.replace("http://", "https://")


def _data(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_a_client_certificate_renewed_in_the_kubeconfig_is_used_once_the_api_refuses_the_old_one(
    tmp_path: Path,
) -> None:
    # kubeadm renews admin.conf's client certificate in place: the connections kept the old one, which the
    # API refused (401) at every refresh until serve restarted.
    certs = make_certs(tmp_path / "certs")
    renewed = client_cert_with_sans(tmp_path / "certs", "renewed", "DNS:serve.example")
    api = CertificateApi(certs.cert, certs.key, certs.ca)

    def kubeconfig(cert: Path, key: Path) -> Path:
        path = _kubeconfig(
            tmp_path, api.url, {"client-certificate-data": _data(cert), "client-key-data": _data(key)}
        )
        config = yaml.safe_load(path.read_text())
        config["clusters"][0]["cluster"]["certificate-authority-data"] = _data(certs.ca)
        path.write_text(yaml.safe_dump(config))
        return path

    path = kubeconfig(certs.client_cert, certs.client_key)
    reader = kubernetes_inventory(
        KubernetesInventoryConfig(cluster="k1", kubeconfig=str(path)), SystemClock()
    )
    try:
        assert [n.name for n in reader.read().node_list] == ["g1"]
        api.sans = (("DNS", "serve.example"),)  # the old certificate expired; the API knows the renewed one
        with pytest.raises(SourceError, match="HTTP 401"):
            reader.read()
        kubeconfig(*renewed)
        assert [n.name for n in reader.read().node_list] == ["g1"]
        assert api.seen[-1] == api.sans
    finally:
        reader.close()
        api.close()


class ServingApi(LocalServer):
    """An HTTPS API that lists one GPU node to anyone, with the server certificate in ``context``: one the
    test loads another into (``load_cert_chain``) serves it from the next connection on."""

    def __init__(self, cert: Path, key: Path) -> None:
        class Handler(QuietHandler):
            def do_GET(self) -> None:
                _answer(self, True)

        super().__init__(Handler)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.server.socket = self.context.wrap_socket(self.server.socket, server_side=True)
        self.url = self.url.replace("http://", "https://")


@pytest.mark.parametrize(
    "ca_in",
    ["data", "file", "in-cluster"],
    ids=[
        "kubeconfig certificate-authority-data",
        "kubeconfig certificate-authority",
        "service account ca.crt",
    ],
)
def test_a_cluster_ca_reissued_is_used_once_the_apis_certificate_does_not_verify(
    tmp_path: Path, ca_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cluster's CA re-issued (and the API server's certificate with it), the kubeconfig given the new
    # CA: the client verified the API against the CA it had copied from certificate-authority-data at start,
    # and every refresh failed (CERTIFICATE_VERIFY_FAILED) until serve restarted.
    old, new = make_certs(tmp_path / "old"), make_certs(tmp_path / "new")
    api = ServingApi(old.cert, old.key)
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(old.ca.read_bytes())
    path = _kubeconfig(tmp_path, api.url, {"token": "t"})

    def trust(ca: Path) -> None:
        if ca_in == "data":
            config = yaml.safe_load(path.read_text())
            config["clusters"][0]["cluster"]["certificate-authority-data"] = _data(ca)
            path.write_text(yaml.safe_dump(config))
        else:
            ca_file.write_bytes(ca.read_bytes())

    if ca_in == "in-cluster":
        token = tmp_path / "token"
        token.write_text("t")
        monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
        monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca_file))
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", api.url.rsplit(":", 1)[1])
        cfg = KubernetesInventoryConfig(cluster="k1")
    else:
        if ca_in == "file":
            config = yaml.safe_load(path.read_text())
            config["clusters"][0]["cluster"]["certificate-authority"] = str(ca_file)
            path.write_text(yaml.safe_dump(config))
        trust(old.ca)
        cfg = KubernetesInventoryConfig(cluster="k1", kubeconfig=str(path))
    reader = kubernetes_inventory(cfg, SystemClock())
    try:
        assert [n.name for n in reader.read().node_list] == ["g1"]
        api.context.load_cert_chain(new.cert, new.key)  # the CA re-issued; serve still trusts the old one
        with pytest.raises(SourceError, match="did not verify against the CA serve trusts"):
            reader.read()  # nothing given serve yet: the read fails, and is not tried again and again
        trust(new.ca)
        assert [n.name for n in reader.read().node_list] == ["g1"]
    finally:
        reader.close()
        api.close()
