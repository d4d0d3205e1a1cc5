"""A real `gpuwarden serve` that cannot start: its port taken, its SQLite store held locked by another
process. It says so and exits as the exit status table says, and leaves nothing a later start trips over."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

from alerting.db import make_engine
from alerting.migrate import upgrade
from tests.integration import http_probe
from tests.integration.gpuwarden_server import TOKEN, gpuwarden_binary, gpuwarden_serve
from tests.integration.servers import free_port


def _serve(db: Path, port: int) -> subprocess.CompletedProcess[str]:
    """``serve`` on ``db`` and ``port``, run until it exits (a minute at most: one that serves fails)."""
    return subprocess.run(
        [gpuwarden_binary(), "serve", "--port", str(port), "--db", str(db), "--log-format", "text"],
        env={**os.environ, "GPUWARDEN_API_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.integration
def test_serve_refused_for_a_taken_port_leaves_no_file_and_starts_once_the_port_is_free(
    tmp_path: Path,
) -> None:
    """The refusal left the store's lock file and a journal directory with its lock (the owner's alone):
    a later start as another user (the systemd unit's) could not open them."""
    store = tmp_path / "store"
    store.mkdir()
    db = store / "gw.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        refused = _serve(db, port)
    said = " ".join(refused.stderr.split())
    assert refused.returncode == 75, said
    assert f"--port {port}: cannot listen on 127.0.0.1:{port}: Address already in use" in said
    assert "Traceback" not in said and list(store.iterdir()) == []
    with gpuwarden_serve(tmp_path, str(db)) as (url, _):
        assert http_probe.get(f"{url}/-/ready", timeout=10).status_code == 200


@pytest.mark.integration
@pytest.mark.parametrize("served_before", [True, False], ids=["served-before", "new-journal"])
def test_serve_refuses_a_sqlite_store_another_process_holds_locked_naming_it_with_exit_75(
    tmp_path: Path, served_before: bool
) -> None:
    """serve started, served, and stayed unready ("the store is unreachable: database is locked"), the file
    and the holder never named, or, with a journal new to the store, stopped with a traceback (exit 1); the
    exit status table says 75 for a SQLite store locked."""
    db = tmp_path / "gw.db"
    if served_before:
        with gpuwarden_serve(tmp_path, str(db)):
            pass
    else:
        engine = make_engine(str(db))
        upgrade(engine)
        engine.dispose()
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        refused = _serve(db, free_port())
    finally:
        holder.close()
    said = " ".join(refused.stderr.split())
    assert refused.returncode == 75, said
    assert f"--db '{db}': cannot open the store: database is locked" in said, said
    assert "another process holds a write transaction on the file" in said and "end it" in said
    assert "Traceback" not in said and "serving on" not in said
