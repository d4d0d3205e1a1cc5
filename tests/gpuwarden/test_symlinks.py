"""A file written whole goes through a symlink only where Linux would follow it: not through another user's
link in a sticky directory every user can write (``/tmp``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpuwarden.symlinks import UntrustedSymlink, resolved_path

OTHER_USER = 54321


def shared_directory(tmp_path: Path) -> Path:
    """A directory as /tmp is: sticky, writable by every user."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    return shared


def planted_link(shared: Path, target: Path, owner: int = OTHER_USER) -> Path:
    """A symlink at the state file's path to ``target``, made by user ``owner``."""
    link = shared / "gpuwarden-anomaly.state.npz"
    link.symlink_to(target)
    os.lchown(link, owner, owner)
    return link


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a symlink to another user needs root")


@needs_root
def test_a_link_of_its_own_user_or_outside_a_shared_directory_is_followed(tmp_path: Path) -> None:
    """An operator's own link (the state file on a volume of its own) is written through as before."""
    kept = tmp_path / "volume" / "state.npz"
    kept.parent.mkdir()
    own = planted_link(shared_directory(tmp_path), kept, owner=os.geteuid())
    assert resolved_path(own) == kept
    private = tmp_path / "private"
    private.mkdir(mode=0o755)
    (private / "state.npz").symlink_to(kept)
    os.lchown(private / "state.npz", OTHER_USER, OTHER_USER)  # only root can write here: its link counts
    assert resolved_path(private / "state.npz") == kept


@needs_root
def test_a_link_on_the_way_to_the_state_file_is_checked_too(tmp_path: Path) -> None:
    shared = shared_directory(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (shared / "dir").symlink_to(tmp_path / "elsewhere")
    os.lchown(shared / "dir", OTHER_USER, OTHER_USER)
    with pytest.raises(UntrustedSymlink):
        resolved_path(shared / "dir" / "state.npz")


def test_a_path_without_links_resolves_as_realpath_does(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").symlink_to("a")
    for given in ("a/state.npz", "b/state.npz", "b/../a/./state.npz", "missing/x/../state.npz"):
        assert resolved_path(tmp_path / given) == Path(os.path.realpath(tmp_path / given)), given
