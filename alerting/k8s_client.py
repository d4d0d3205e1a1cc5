"""Listing a Kubernetes resource with the official client, for the Kubernetes inventory: raw JSON pages,
errors as ``SourceError`` that say what to do."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from alerting.k8s_inventory import PAGE, Lister, ListExpired
from gpuwarden.errors import SourceError
from gpuwarden.jsonload import loads_without_gc


class Unauthorized(SourceError):
    """The API refused serve's credentials (HTTP 401): a token that expired or was revoked."""


class Untrusted(SourceError):
    """The API's certificate did not verify against the CA serve trusts: the cluster's CA re-issued (or
    the wrong kubeconfig)."""


def _verify_failure(exc: BaseException) -> BaseException | None:
    """The TLS verification failure under a client error (urllib3 wraps it: ``MaxRetryError`` of an
    ``SSLError`` of ``ssl.SSLCertVerificationError``), or None when it is not one."""
    import ssl  # noqa: PLC0415

    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        found = todo.pop()
        if not isinstance(found, BaseException) or id(found) in seen:
            continue
        if isinstance(found, ssl.SSLCertVerificationError):
            return found
        seen.add(id(found))
        todo.extend([getattr(found, "reason", None), found.__cause__, found.__context__, *found.args])
    return None


def _api_message(exc: Any) -> str:
    """The Kubernetes ``Status`` message of an ``ApiException``, when its body has one."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return ""
    return str(body.get("message", "")) if isinstance(body, dict) else ""


def api_lister(
    api_client: Any,
    timeout_seconds: float = 10.0,
    calls: Mapping[str, Callable[..., Any]] | None = None,
    now: Callable[[], float] = time.monotonic,
) -> Lister:
    """A ``Lister`` over ``kubernetes.client``: raw JSON pages (the client's model objects cost ~10x the
    time for large lists), errors as ``SourceError`` (a 429, 5xx or expired ``continue`` is retryable; an
    expired one is ``ListExpired``, which the inventory answers by listing again from the first page).

    ``timeout_seconds`` bounds a whole list, every page of it: each request gets what is left, and a list
    still going when it is up fails (retryable). A client left with urllib3's default retries is given
    bounded ones (``bound_retries``), else one API that accepts connections and never answers took four
    times the timeout. ``calls`` replaces the client's list functions, ``now`` the clock (tests)."""
    from kubernetes import client  # noqa: PLC0415 - only serve with a Kubernetes inventory needs it
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415
    from urllib3.exceptions import HTTPError  # noqa: PLC0415

    if calls is None:
        bound_retries(api_client)
        core = client.CoreV1Api(api_client)
        calls = {"nodes": core.list_node, "pods": core.list_pod_for_all_namespaces}
    selectors = {"pods": "spec.nodeName!="}  # bound pods only; Pending ones hold no GPU yet

    def list_all(resource: str) -> Iterator[dict[str, Any]]:
        token: str | None = None
        deadline = now() + timeout_seconds
        while True:
            left = deadline - now()
            if left <= 0:
                raise SourceError(
                    f"list {resource}: not done within request_timeout_seconds ({timeout_seconds:g} s)",
                    source="kubernetes",
                    retryable=True,
                )
            kwargs: dict[str, Any] = {
                "limit": PAGE,
                "_preload_content": False,
                "_request_timeout": left,
            }
            if resource in selectors:
                kwargs["field_selector"] = selectors[resource]
            if token:
                kwargs["_continue"] = token
            try:
                response = calls[resource](**kwargs)
                page = loads_without_gc(response.data)  # 500 pods: hundreds of thousands of objects
            except ApiException as exc:
                raise _api_error(resource, exc) from exc
            except (HTTPError, OSError, ValueError) as exc:
                failure = _verify_failure(exc)
                if failure is not None:
                    raise Untrusted(
                        f"list {resource}: the API's certificate did not verify against the CA serve"
                        f" trusts ({failure}): the cluster's CA was re-issued, or the kubeconfig is not this"
                        " cluster's (its certificate-authority(-data))",
                        source="kubernetes",
                    ) from exc
                raise SourceError(
                    f"list {resource}: {type(exc).__name__}: {exc}", source="kubernetes"
                ) from exc
            if not isinstance(page, dict) or not isinstance(page.get("items"), list):
                raise SourceError(f"list {resource}: the response has no 'items' list", source="kubernetes")
            yield from page["items"]
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return

    return list_all


def bound_retries(api_client: Any) -> None:
    """Give a client that kept urllib3's default retries (three more tries after a timeout or a broken
    connection, each taking the whole timeout again) bounded ones: none after a timeout or a connection
    error (the next refresh tries again), and a 429 or 503 with ``Retry-After`` retried twice, waiting at
    most a second each (then the 429 itself is the error). A client configured with its own retries is
    left as it is."""
    from urllib3.util.retry import Retry  # noqa: PLC0415

    configuration = getattr(api_client, "configuration", None)
    manager = getattr(getattr(api_client, "rest_client", None), "pool_manager", None)
    if configuration is None or manager is None or configuration.retries is not None:
        return
    retries = Retry(
        total=2, connect=0, read=0, redirect=0, other=0, status=2, raise_on_status=False, retry_after_max=1
    )
    manager.connection_pool_kw["retries"] = retries
    manager.clear()  # pools made before this keep the old retries


def _api_error(resource: str, exc: Any) -> SourceError:
    status = exc.status or 0
    message = f"list {resource}: HTTP {status} {exc.reason}"
    detail = _api_message(exc)
    if detail:
        message += f": {detail}"
    if status == 401:
        message += (
            " (the API rejected serve's credentials: an expired or revoked token, or the wrong kubeconfig)"
        )
        return Unauthorized(message, source="kubernetes", retryable=False)
    elif status == 403:
        message += (
            " (give serve's credentials get/list on nodes and pods: deploy/kubernetes-inventory-rbac.yaml)"
        )
    elif status == 410:
        message += (
            " (the list's continue token expired: listing took longer than the API server keeps its snapshot;"
            " the list starts again from its first page at once, once, then at the next refresh)"
        )
        return ListExpired(message, source="kubernetes", retryable=True)
    return SourceError(message, source="kubernetes", retryable=status == 429 or status >= 500)
