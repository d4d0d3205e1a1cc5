"""The anomaly state file is not written through another user's symlink in a sticky directory every user
can write (``/tmp``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from anomaly.snapshot import StateFileInUse, claim_state_file, save_snapshot
from gpuwarden.clock import FakeClock
from tests.anomaly.snapshot_grid import _saved
from tests.gpuwarden.test_symlinks import needs_root, planted_link, shared_directory


@needs_root
def test_another_users_symlink_in_a_shared_directory_does_not_have_the_snapshot_replace_its_target(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A local user's link at the state file's path to a file of root's: root's `anomaly run` replaced that
    file with its snapshot."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = planted_link(shared_directory(tmp_path), victim)
    service, _ = _saved(tmp_path, FakeClock())
    with caplog.at_level(logging.WARNING):
        assert not save_snapshot(link, service.snapshot())
    assert victim.read_text() == "precious"
    assert "is a symlink of user 54321" in caplog.text and "is not followed" in caplog.text
    with pytest.raises(StateFileInUse, match="sticky directory every user can write"):
        claim_state_file(link)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anomaly.state.npz", "shared", "victim"]  # no lock
