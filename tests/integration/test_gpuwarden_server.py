"""The tests' own ``gpuwarden serve``: its token is the child's, never this process's environment."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.integration.gpuwarden_server import AUTH, gpuwarden_serve

ALERT = {"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "n1"}}


@pytest.mark.integration
def test_serve_takes_the_token_and_the_tests_process_never_holds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was set in os.environ while serve ran: every CLI call of the test, in-process or a child, sent
    # it, and on the same xdist worker so did anything else that ran meanwhile; a test that forgot to
    # pass the token passed.
    monkeypatch.delenv("GPUWARDEN_API_TOKEN", raising=False)
    with gpuwarden_serve(tmp_path, str(tmp_path / "gw.db")) as (url, _):
        assert "GPUWARDEN_API_TOKEN" not in os.environ
        assert httpx.post(f"{url}/api/v2/alerts", json=[ALERT], headers=AUTH, timeout=10).status_code == 200
        wrong = {"Authorization": "Bearer not-the-token"}
        assert httpx.post(f"{url}/api/v2/alerts", json=[ALERT], headers=wrong, timeout=10).status_code == 401
    assert "GPUWARDEN_API_TOKEN" not in os.environ
