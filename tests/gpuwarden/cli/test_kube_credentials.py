"""The Kubernetes inventory's credentials from a kubeconfig's exec plugin that failed when serve started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gpuwarden.cli.inventories import kubernetes_inventory
from gpuwarden.clock import SystemClock
from gpuwarden.config import KubernetesInventoryConfig
from gpuwarden.errors import SourceError
from tests.http_stub import FixedAnswer

EMPTY_LIST = json.dumps({"kind": "List", "metadata": {}, "items": []}).encode()


def _kubeconfig(tmp_path: Path, url: str) -> tuple[Path, Path]:
    """A kubeconfig whose exec plugin fails (an expired SSO session) until ``logged-in`` exists; the file
    and that flag's path."""
    flag = tmp_path / "logged-in"
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "kind": "ExecCredential",
        "status": {"token": "fresh-token"},
    }
    plugin = tmp_path / "get-token"
    plugin.write_text(
        f"#!/bin/sh\nif [ ! -e {flag} ]; then echo 'SSO session expired, log in again' >&2; exit 1; fi\n"
        f"echo '{json.dumps(credential)}'\n"
    )
    plugin.chmod(0o755)
    exec_config = {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin)}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": url}}],
        "users": [{"name": "u", "user": {"exec": exec_config}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path, flag


def test_an_exec_plugin_that_failed_at_start_is_run_again_and_its_error_said_until_it_gives_a_token(
    tmp_path: Path,
) -> None:
    # The client ran the plugin once, at start, logged its failure and went on without credentials for
    # good: every read went out anonymous (refused by a real API server) until serve restarted.
    api = FixedAnswer(200, EMPTY_LIST)
    try:
        kubeconfig, flag = _kubeconfig(tmp_path, api.url)
        cfg = KubernetesInventoryConfig(cluster="k1", kubeconfig=str(kubeconfig))
        reader = kubernetes_inventory(cfg, SystemClock())
        try:
            with pytest.raises(
                SourceError, match=r"exec plugin gave serve no credentials.*SSO session expired"
            ):
                reader.read()
            assert api.authorizations == []  # nothing sent without credentials
            flag.touch()  # the operator logged in again: the next refresh reads, with the token
            reader.read()
            assert api.authorizations and set(api.authorizations) == {"Bearer fresh-token"}
        finally:
            reader.close()
    finally:
        api.close()
