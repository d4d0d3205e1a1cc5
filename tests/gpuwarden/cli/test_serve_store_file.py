"""A SQLite store file deleted or replaced while `serve` runs is said in its log and readiness."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from alerting.health import ServiceHealth
from alerting.store_file import StoreFile
from gpuwarden.api import create_app
from gpuwarden.cli.serve_cmd import build_service
from gpuwarden.cli.serve_journal import build_applier
from gpuwarden.config import ApiConfig, GpuwardenConfig
from tests.gpuwarden.api_client import TOKEN, TestClient
from tests.gpuwarden.applier_serve import eventually


def _remove(tmp_path: Path) -> None:
    for name in ("store.db", "store.db-wal", "store.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)


def _replace(tmp_path: Path) -> None:
    shutil.copy(tmp_path / "store.db", tmp_path / "copy.db")
    os.replace(tmp_path / "copy.db", tmp_path / "store.db")


@pytest.mark.parametrize(
    ("change", "said"), [(_remove, "was deleted"), (_replace, "was replaced")], ids=["deleted", "replaced"]
)
def test_a_store_file_deleted_or_replaced_while_serve_runs_fails_readiness_and_is_logged_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    change: Callable[[Path], None],
    said: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = GpuwardenConfig.model_validate({"alerting": {"tick_interval_seconds": 0.02}})
    health = ServiceHealth()
    engine, background, _, _ = build_service(cfg, "store.db", health)
    applier = build_applier(cfg, "store.db", engine, health)
    app = create_app(engine, ApiConfig(token=SecretStr(TOKEN)), applier=applier, background=background)
    with caplog.at_level(logging.INFO), TestClient(app, raise_server_exceptions=False) as client:
        eventually(lambda: client.get("/-/ready").status_code == 200)
        change(tmp_path)
        eventually(lambda: client.get("/-/ready").status_code == 503)
        ready = client.get("/-/ready").text
        assert f"the store file {said} while serve runs" in ready and str(tmp_path) not in ready
        ticks = health.ticks
        eventually(lambda: health.ticks >= ticks + 3)  # later ticks: still not ready, logged once
        assert client.get("/-/ready").status_code == 503
    logged = [r.getMessage() for r in caplog.records if r.name == "alerting.store_file"]
    assert len(logged) == 1 and f"{tmp_path / 'store.db'} {said}" in logged[0]


def test_an_in_memory_or_server_store_has_no_file_to_watch(tmp_path: Path) -> None:
    assert StoreFile.watch(":memory:") is None
    assert StoreFile.watch("") is None
    assert StoreFile.watch(None) is None
    assert StoreFile.watch(str(tmp_path / "none.db")) is None
