"""A local Kubernetes API for integration tests: kmock's emulator in its own process, over real HTTP.

``with kube_api() as kube:`` starts `kube_api_server.py` on a free port; point the official client
(``Configuration.host = kube.url`` or ``kube.write_kubeconfig(path)``) or `gpuwarden serve` at it, seed
objects with ``kube.create(...)``, and make the next requests fail with ``kube.fail_next(2)``.

It is an in-memory store of JSON objects, not an API server. What a reader must know:

- No selectors and no paging: ``labelSelector``, ``fieldSelector`` (e.g. ``spec.nodeName=n1``),
  ``limit`` and ``continue`` are ignored. A list returns every object of the kind (in the namespace,
  if the path has one), and never a ``continue`` token, so a paging loop ends after one page. Callers
  must filter client-side.
- No validation and no defaults: an object is stored as posted. The typed client then fails (pydantic
  ``ValidationError``) to read what the real server would have refused: a Pod without
  ``spec.containers``, a Deployment without ``spec.selector``, an owner reference without ``uid``. Seed
  complete objects, or read with ``_preload_content=False``. Nothing is computed: no ``status``
  (capacity, conditions, phase, replicas), no ``metadata.generation``, no controller creates
  ReplicaSets or Pods, and no garbage collection follows ``ownerReferences``.
- The server script stamps ``metadata.uid``, ``creationTimestamp``, ``resourceVersion`` (one counter,
  bumped by creates and merge patches; not by JSON patches or deletes) and the namespace from the URL;
  lists carry ``kind``, ``apiVersion`` and ``metadata.resourceVersion``; errors are ``Status`` bodies
  with the API server's ``reason`` (``NotFound``, ``AlreadyExists``).
- Every PATCH is a JSON merge patch, whatever its content type: dicts merge, lists are replaced
  whole (a strategic merge patch of ``spec.taints`` replaces the taints), ``null`` removes a key.
  A JSON patch (a list of operations) works. PUT (``replace_*``), POST to subresources (pod
  ``eviction``, ``binding``) and ``deletecollection`` answer 404. ``/api/v1/namespaces`` itself
  (the Namespace kind) answers 500: kmock reads ``namespaces`` there as a namespace prefix.
- A delete removes the object at once unless it has finalizers; no grace period, no
  ``deletionTimestamp`` on pods.
- Any or no bearer token is accepted.
- A watch sends every existing object as ADDED, then live events; it ignores ``resourceVersion`` and
  ``timeoutSeconds`` and never ends by itself.
- The official client itself retries a GET, PUT or DELETE answered 413, 429 or 503 with ``Retry-After``,
  up to three times, sleeping as told (urllib3's default ``Retry``); POST and PATCH raise at once. Set
  ``Configuration.retries = False`` for every failure to reach the caller as an ``ApiException``.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from tests.integration.servers import READY_SECONDS, free_port, running

SERVER_SCRIPT = Path(__file__).with_name("kube_api_server.py")
TOKEN = "kube-api-test-token"

# kind -> (plural, namespaced) for the kinds tests seed.
KINDS: dict[str, tuple[str, bool]] = {
    "Node": ("nodes", False),
    "Pod": ("pods", True),
    "Event": ("events", True),
    "ConfigMap": ("configmaps", True),
    "Deployment": ("deployments", True),
    "ReplicaSet": ("replicasets", True),
    "StatefulSet": ("statefulsets", True),
    "DaemonSet": ("daemonsets", True),
    "Job": ("jobs", True),
    "CronJob": ("cronjobs", True),
}


def object_path(api_version: str, kind: str, namespace: str | None = None, name: str | None = None) -> str:
    """The URL path of a collection (``name`` None) or of one object."""
    if kind not in KINDS:
        raise KeyError(f"kind {kind!r} is not in KINDS; add its plural there")
    plural, namespaced = KINDS[kind]
    path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespaced:
        path += f"/namespaces/{namespace or 'default'}"
    path += f"/{plural}"
    return f"{path}/{name}" if name is not None else path


def _json(response: httpx.Response) -> dict[str, Any]:
    if response.is_error:
        request = response.request
        raise httpx.HTTPStatusError(
            f"{request.method} {request.url.path} answered {response.status_code}: {response.text[:500]}",
            request=request,
            response=response,
        )
    body: dict[str, Any] = response.json()
    return body


class KubeApi:
    """The test's handle on a running stand-in: seed, change and break it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._http = httpx.Client(base_url=url, timeout=5.0)

    def __enter__(self) -> KubeApi:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._http.close()

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """POST ``obj`` to its collection; return it as stored (with uid, resourceVersion, ...)."""
        meta = obj.get("metadata", {})
        path = object_path(obj["apiVersion"], obj["kind"], meta.get("namespace"))
        return _json(self._http.post(path, json=obj))

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        """The object as stored now."""
        return _json(self._http.get(object_path(api_version, kind, namespace, name)))

    def patch(
        self, api_version: str, kind: str, name: str, patch: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """Merge ``patch`` into the object (``None`` removes a key); return the result."""
        path = object_path(api_version, kind, namespace, name)
        headers = {"Content-Type": "application/merge-patch+json"}
        return _json(self._http.patch(path, json=patch, headers=headers))

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> None:
        """Delete the object (it is gone at once unless it has finalizers)."""
        _json(self._http.delete(object_path(api_version, kind, namespace, name)))

    def fail_next(self, count: int, status: int = 429) -> None:
        """Answer the next ``count`` API requests with ``status``, a `Status` body and `Retry-After: 1`."""
        _json(self._http.post("/_control/fail", params={"count": count, "status": status}))

    def write_kubeconfig(self, path: Path) -> Path:
        """Write a kubeconfig whose current context is this server with a bearer token; return ``path``."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kube-api", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": {"token": TOKEN}}],
            "contexts": [{"name": "kube-api", "context": {"cluster": "kube-api", "user": "test"}}],
            "current-context": "kube-api",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path


@contextmanager
def kube_api(log_dir: Path | None = None, timeout: float = READY_SECONDS) -> Iterator[KubeApi]:
    """Run the stand-in on a free port until the block ends; its output goes to ``log_dir/kube-api.log``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, str(SERVER_SCRIPT), "--port", str(port)]
    with ExitStack() as stack:
        if log_dir is None:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kube-api-")))
        stack.enter_context(running(argv, f"{url}/version", log_dir / "kube-api.log", timeout))
        yield stack.enter_context(KubeApi(url))
