"""Listing the Kubernetes API in pages: what happens when a ``continue`` token expires mid-list."""

from __future__ import annotations

import inspect
import json
import logging
import tomllib
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from packaging.requirements import Requirement
from urllib3.util.retry import Retry

from alerting.k8s_client import api_lister
from alerting.k8s_inventory import KubernetesInventory
from gpuwarden.clock import FakeClock
from gpuwarden.errors import SourceError

NODES = [
    {
        "metadata": {"name": f"g{i}"},
        "status": {
            "capacity": {"nvidia.com/gpu": "8"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    for i in (1, 2)
]


def _pod(i: int) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "serving", "name": f"p{i}"},
        "spec": {"nodeName": f"g{i}", "containers": [{"resources": {"limits": {"nvidia.com/gpu": "8"}}}]},
        "status": {"phase": "Running"},
    }


class _Response:
    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body).encode()


class PagedApi:
    """Nodes in one page; pods in two (``p1``, then ``p2``), whose second page answers 410 Gone (the
    continue token expired: etcd compacted past the list's snapshot) the first ``expiries`` times."""

    def __init__(self, expiries: int) -> None:
        self.expiries = expiries
        self.pod_pages: list[str | None] = []  # the continue token of each pods request

    def nodes(self, **kwargs: Any) -> _Response:
        return _Response({"items": NODES, "metadata": {}})

    def pods(self, **kwargs: Any) -> _Response:
        token = kwargs.get("_continue")
        self.pod_pages.append(token)
        if token is None:
            return _Response({"items": [_pod(1)], "metadata": {"continue": "t1"}})
        if self.expiries:
            self.expiries -= 1
            exc = ApiException(status=410, reason="Gone")
            exc.body = json.dumps({"kind": "Status", "reason": "Expired", "message": "continue too old"})
            raise exc
        return _Response({"items": [_pod(2)], "metadata": {}})

    def reader(self) -> KubernetesInventory:
        lister = api_lister(None, calls={"nodes": self.nodes, "pods": self.pods})
        return KubernetesInventory(FakeClock(0.0), lister, cluster="k1")


def test_an_expired_continue_token_relists_from_the_first_page_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # It failed the read, and the inventory stayed as it was until the next refresh a whole interval later.
    api = PagedApi(expiries=1)
    reader = api.reader()
    with caplog.at_level(logging.WARNING, logger="alerting.k8s_inventory"):
        read = reader.read()
    assert api.pod_pages == [None, "t1", None, "t1"]  # the list started again, not resumed
    assert sorted(p for w in read.workload_list for p in w.pods) == ["p1", "p2"]  # each pod once
    assert reader.relists == 1
    (said,) = [r.getMessage() for r in caplog.records]
    assert "HTTP 410" in said and "listing again from the first page" in said


def test_a_second_expiry_fails_the_read_for_the_next_refresh_and_keeps_the_last_inventory() -> None:
    api = PagedApi(expiries=0)
    reader = api.reader()
    before = reader.read()
    api.expiries, api.pod_pages = 2, []
    with pytest.raises(SourceError, match="HTTP 410") as err:
        reader.read()
    assert err.value.retryable
    assert api.pod_pages == [None, "t1", None, "t1"]  # one immediate relist, not a loop
    assert reader.relists == 1
    api.expiries = 0
    assert reader.read().workload_list == before.workload_list  # nothing half-read was kept


def test_the_declared_urllib3_floor_admits_no_release_without_the_retry_after_cap_the_client_sets() -> None:
    # bound_retries passes Retry(retry_after_max=1), which urllib3 added in 2.6.3 (its changelog: "Started
    # treating Retry-After times greater than 6 hours as 6 hours by default", #3743); pyproject said only
    # kubernetes>=30, whose own floor (urllib3>=1.24.2) lets an older urllib3 in: serve's Kubernetes
    # inventory then failed with a TypeError when it built its client.
    assert "retry_after_max" in inspect.signature(Retry).parameters  # the installed one has it
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    asked = [Requirement(r) for r in pyproject["project"]["dependencies"]]
    (urllib3,) = [r for r in asked if r.name == "urllib3"]
    assert not urllib3.specifier.contains("2.6.2") and urllib3.specifier.contains("2.6.3")
