"""A kubeconfig's exec plugin (``aws eks get-token``, kubelogin, ``gke-gcloud-auth-plugin``) run with a time
limit, and killed past it.

The official client runs the plugin with no limit, when it loads the kubeconfig and again whenever the token
it gave expires (before an API request): a plugin that never answers (kubelogin waiting for a browser login
no one will make in serve's pod, a token service that accepts the connection and is silent) hung serve's
start for ever with only the store's path logged, and would have hung a refresh. kubectl (client-go) does not
limit it either: a person runs it and may take a while to log in (kubernetes/kubernetes#108849 decided
against a limit for that reason). serve has no person to wait for, so the plugin runs non-interactive and is
killed, with its process group, after the inventory's ``request_timeout_seconds``; the client logs that like
any failed run and the inventory fails its read saying so (``kube_credentials``)."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

from kubernetes.config import kube_config
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.exec_provider import ExecProvider

# The process groups of the plugins running now: in a group of its own, a plugin is not stopped with serve
# (a stop signal to serve's group), so serve kills those still running when it exits.
_running: set[int] = set()


class BoundedExecProvider(ExecProvider):  # type: ignore[misc]  # the client is untyped
    """The client's ``ExecProvider`` whose ``run`` stops the plugin after ``timeout_seconds``."""

    timeout_seconds = 10.0

    def run(self, previous_response: object = None) -> Any:
        """The plugin's ExecCredential ``status``; a ``ConfigException`` saying why when it gave none."""
        spec: dict[str, Any] = {"interactive": False}  # serve has no terminal to ask anyone on
        if previous_response:
            spec["response"] = previous_response
        if self.cluster:
            spec["cluster"] = dict(self.cluster.value)
            for extension in self.cluster.value.get("extensions") or []:
                if extension.get("name") == "client.authentication.k8s.io/exec":
                    spec["cluster"]["config"] = extension.get("extension")
                    break
        info = {"apiVersion": self.api_version, "kind": "ExecCredential", "spec": spec}
        env = {**self.env, "KUBERNETES_EXEC_INFO": json.dumps(info)}
        try:
            process = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.cwd,
                env=env,
                text=True,
                start_new_session=True,  # its own process group: what it starts is killed with it
            )
        except OSError as exc:
            raise ConfigException(f"exec: cannot run {self.args[0]}: {exc}") from exc
        _running.add(process.pid)
        with process:
            try:
                stdout, stderr = process.communicate(timeout=self.timeout_seconds)
            except subprocess.TimeoutExpired:
                _kill_group(process.pid)
                raise ConfigException(
                    f"exec: {self.args[0]} gave no credential within {self.timeout_seconds:g} s (waiting for"
                    " an interactive login, or for its token service?); killed it. It must answer without a"
                    " person: log in where it caches the token, or raise request_timeout_seconds"
                ) from None
            finally:
                _running.discard(process.pid)
        if process.returncode != 0:
            said = stderr.strip()
            raise ConfigException(f"exec: process returned {process.returncode}{f'. {said}' if said else ''}")
        return _status(stdout, self.api_version)


def _kill_group(pid: int) -> None:
    """Kill the plugin and whatever it started (a browser helper, a shell's child)."""
    with contextlib.suppress(ProcessLookupError):  # ended on its own meanwhile
        os.killpg(pid, signal.SIGKILL)


@atexit.register
def _kill_running() -> None:
    """Kill the plugins still running when the process exits (serve stopped during a refresh)."""
    for pid in list(_running):
        _kill_group(pid)


def _status(stdout: str, api_version: str) -> Any:
    """The ``status`` of the ExecCredential the plugin printed, checked as the client checks it."""
    try:
        data = json.loads(stdout)
    except ValueError as exc:
        raise ConfigException(f"exec: failed to decode process output: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigException("exec: malformed response: not an ExecCredential object")
    for key in ("apiVersion", "kind", "status"):
        if key not in data:
            raise ConfigException(f"exec: malformed response. missing key '{key}'")
    if data["apiVersion"] != api_version:
        raise ConfigException(f"exec: plugin api version {data['apiVersion']} does not match {api_version}")
    return data["status"]


def bound_exec_plugins(timeout_seconds: float) -> None:
    """Have the client run every kubeconfig exec plugin of this process through ``BoundedExecProvider``
    with ``timeout_seconds`` (the loader looks ``ExecProvider`` up in its module at each run, at load and
    at each token refresh alike)."""
    bounded = type("BoundedExecProvider", (BoundedExecProvider,), {"timeout_seconds": timeout_seconds})
    kube_config.ExecProvider = bounded


class _UnrunExecProvider(ExecProvider):  # type: ignore[misc]  # the client is untyped
    """The client's ``ExecProvider`` with its spec checked (as the client's constructor checks it) and the
    plugin not run: the client gets a placeholder token."""

    def run(self, previous_response: object = None) -> Any:
        """A placeholder credential, without running the plugin."""
        return {"token": "exec-plugin-not-run"}


@contextlib.contextmanager
def exec_plugins_unrun() -> Iterator[None]:
    """Within the block, the client loads a kubeconfig without running its exec plugin: serve's check before
    its start (the settings, not the credentials: the start runs the plugin, and a plugin that hangs cost
    ``request_timeout_seconds`` at each of the two loads)."""
    before = kube_config.ExecProvider
    kube_config.ExecProvider = _UnrunExecProvider
    try:
        yield
    finally:
        kube_config.ExecProvider = before
