"""The Kubernetes inventory's credentials from a kubeconfig's exec plugin that failed when serve started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from alerting.k8s_inventory import KubernetesInventory
from gpuwarden.cli.inventories import kubernetes_inventory
from gpuwarden.clock import SystemClock
from gpuwarden.config import KubernetesInventoryConfig
from gpuwarden.errors import SourceError
from tests.http_stub import FixedAnswer

EMPTY_LIST = json.dumps({"kind": "List", "metadata": {}, "items": []}).encode()


def _write_kubeconfig(tmp_path: Path, url: str, plugin: Path) -> Path:
    """A kubeconfig at ``tmp_path`` whose one user gets its credentials from the exec ``plugin``."""
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
    return path


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
    path = _write_kubeconfig(tmp_path, url, plugin)
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


def test_a_kubeconfig_broken_while_the_plugin_gives_nothing_fails_the_read_saying_why(tmp_path: Path) -> None:
    # While the plugin gives no credentials the kubeconfig is loaded again before each read; a file edited
    # meanwhile into one whose user is not a mapping made the loader raise AttributeError, which serve's
    # start reports as a kubeconfig error but the reload let through: a traceback at every refresh.
    api = FixedAnswer(200, EMPTY_LIST)
    try:
        kubeconfig, _flag = _kubeconfig(tmp_path, api.url)
        cfg = KubernetesInventoryConfig(cluster="k1", kubeconfig=str(kubeconfig))
        reader = kubernetes_inventory(cfg, SystemClock())
        try:
            with pytest.raises(SourceError, match="SSO session expired"):
                reader.read()  # the start's failure
            config = yaml.safe_load(kubeconfig.read_text())
            config["users"][0]["user"] = "oops"
            kubeconfig.write_text(yaml.safe_dump(config))
            with pytest.raises(SourceError, match=r"gave serve no credentials.*AttributeError") as raised:
                reader.read()
            assert raised.value.retryable
            assert api.authorizations == []
        finally:
            reader.close()
    finally:
        api.close()


def _hanging_kubeconfig(tmp_path: Path, url: str, first: str = "") -> tuple[Path, Path]:
    """A kubeconfig whose exec plugin (a shell and the ``sleep`` it started) never answers, as kubelogin
    waiting for a browser login; after ``first``, printed by its first run only. The file, and the file
    where each run writes its processes' ids."""
    pids = tmp_path / "pids"
    ran = tmp_path / "ran"
    plugin = tmp_path / "login"
    answer = f"if [ ! -e {ran} ]; then touch {ran}; echo '{first}'; exit 0; fi\n" if first else ""
    plugin.write_text(f"#!/bin/sh\n{answer}echo $$ >> {pids}\nsleep 3600 &\necho $! >> {pids}\nwait\n")
    path = _write_kubeconfig(tmp_path, url, plugin)
    return path, pids


def test_a_check_of_the_settings_does_not_run_the_exec_plugin(tmp_path: Path) -> None:
    """serve's check before its start loaded the kubeconfig as the start does: a plugin that never answers
    cost request_timeout_seconds there too."""
    kubeconfig, pids = _hanging_kubeconfig(tmp_path, "http://127.0.0.1:9")
    cfg = KubernetesInventoryConfig(cluster="k1", kubeconfig=str(kubeconfig), request_timeout_seconds=5)
    started = time.monotonic()
    reader = _within(20, lambda: kubernetes_inventory(cfg, SystemClock(), run_plugins=False), pids)
    assert isinstance(reader, KubernetesInventory)
    reader.close()
    assert not pids.exists()  # not run
    assert time.monotonic() - started < 5


def _running(pids: Path) -> list[int]:
    """The plugin processes ``pids`` names that still run, after a moment for the killed ones to go."""
    deadline = time.monotonic() + 5
    while True:
        alive = []
        for pid in [int(line) for line in pids.read_text().split()] if pids.exists() else []:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            alive.append(pid)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _within(seconds: float, work: Callable[[], object], pids: Path) -> object:
    """``work``'s answer, or a failure when it takes longer than ``seconds`` (its plugin killed then, so
    that the test ends)."""
    answer: list[object] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            answer.append(work())
        except Exception as exc:  # raised again in the test's thread
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for pid in _running(pids):
            os.kill(pid, signal.SIGKILL)
        pytest.fail(f"still waiting for the exec plugin after {seconds} s")
    if failed:
        raise failed[0]
    return answer[0] if answer else None


def test_an_exec_plugin_that_never_answers_is_killed_after_the_timeout_and_the_read_fails_saying_so(
    tmp_path: Path,
) -> None:
    # The client ran the plugin with no limit: serve's start hung for ever, logging only the store's path.
    api = FixedAnswer(200, EMPTY_LIST)
    try:
        kubeconfig, pids = _hanging_kubeconfig(tmp_path, api.url)
        cfg = KubernetesInventoryConfig(cluster="k1", kubeconfig=str(kubeconfig), request_timeout_seconds=1)
        started = time.monotonic()
        reader = _within(20, lambda: kubernetes_inventory(cfg, SystemClock()), pids)
        assert isinstance(reader, KubernetesInventory)
        try:
            assert _running(pids) == []  # the plugin and what it started, killed
            # The first read (serve's start) says the load's failure: the plugin ran again at once, another
            # request_timeout_seconds before serve answered.
            with pytest.raises(SourceError, match=r"login gave no credential within 1 s.*killed it"):
                _within(20, reader.read, pids)
            assert len(pids.read_text().split()) == 2  # one run, two processes
            with pytest.raises(SourceError, match=r"login gave no credential within 1 s.*killed it"):
                _within(20, reader.read, pids)  # run again at the refresh, bounded again
            assert time.monotonic() - started < 20
            assert _running(pids) == []
            assert len(pids.read_text().split()) == 4  # two runs, two processes each
            assert api.authorizations == []
        finally:
            reader.close()
    finally:
        api.close()


def test_a_token_refresh_whose_plugin_never_answers_ends_within_the_timeout(tmp_path: Path) -> None:
    # A token about to expire is refreshed before a request, by running the plugin again: a refresh hung.
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "kind": "ExecCredential",
        "status": {"token": "first-token", "expirationTimestamp": "2000-01-01T00:00:00Z"},
    }
    api = FixedAnswer(200, EMPTY_LIST)
    try:
        kubeconfig, pids = _hanging_kubeconfig(tmp_path, api.url, first=json.dumps(credential))
        cfg = KubernetesInventoryConfig(cluster="k1", kubeconfig=str(kubeconfig), request_timeout_seconds=1)
        reader = kubernetes_inventory(cfg, SystemClock())
        try:
            _within(20, reader.read, pids)  # the expired token sent (a real API refuses it: 401)
            assert _running(pids) == []
            assert pids.exists()  # the plugin ran again, and was killed
            assert set(api.authorizations) == {"Bearer first-token"}
        finally:
            reader.close()
    finally:
        api.close()


def test_a_plugin_still_running_when_serve_exits_is_killed(tmp_path: Path) -> None:
    # In a process group of its own, a plugin is not stopped with serve: serve kills it as it exits.
    pids = tmp_path / "pids"
    script = f"""
import threading, time
from pathlib import Path
from kubernetes.config.kube_config import ConfigNode
from gpuwarden.cli.kube_exec import BoundedExecProvider
exec_config = {{"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "sh",
    "args": ["-c", "echo $$ >> {pids}; sleep 3600 & echo $! >> {pids}; wait"]}}
provider = BoundedExecProvider(ConfigNode("exec", exec_config), None)
provider.timeout_seconds = 600
threading.Thread(target=provider.run, daemon=True).start()
pids = Path({str(pids)!r})
while not pids.exists() or len(pids.read_text().split()) < 2:  # both started: exit now
    time.sleep(0.05)
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, env={**os.environ})
    alive = _running(pids)
    for pid in alive:  # left by a serve that did not kill them: stopped, and the test fails
        os.kill(pid, signal.SIGKILL)
    assert len(pids.read_text().split()) == 2 and alive == []
