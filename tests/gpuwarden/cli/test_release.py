"""``gpuwarden --version``: the release and the commit it was built from."""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gpuwarden
from gpuwarden.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[3]


def _git(tree: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=tree, capture_output=True, text=True, check=True, timeout=30)
    return done.stdout.strip()


def test_version_names_the_package_version_and_the_checked_out_commit() -> None:
    """There was no --version: an operator could not tell which release (README names them by commit) ran."""
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    head = _git(ROOT, "rev-parse", "--short=7", "HEAD")
    assert result.stdout == f"gpuwarden {metadata.version('gpuwarden')} (commit {head})\n"


def test_version_follows_a_branch_whose_ref_is_packed(tmp_path: Path) -> None:
    """git gc moves branch refs into packed-refs; the commit is still found without running git."""
    from gpuwarden.cli.release import checkout_commit  # noqa: PLC0415

    _git(tmp_path, "init", "-q", "-b", "trunk")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "one")
    head = _git(tmp_path, "rev-parse", "HEAD")
    _git(tmp_path, "pack-refs", "--all")
    assert not (tmp_path / ".git" / "refs" / "heads" / "trunk").exists()
    assert checkout_commit(tmp_path) == head
    _git(tmp_path, "checkout", "-q", "--detach")
    assert checkout_commit(tmp_path) == head
    assert checkout_commit(tmp_path / "nowhere") is None


def _committed(tree: Path) -> str:
    _git(tree, "init", "-q", "-b", "trunk")
    _git(tree, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "one")
    return _git(tree, "rev-parse", "HEAD")


def test_version_follows_a_branch_that_is_a_symbolic_ref(tmp_path: Path) -> None:
    """A branch that is itself a symbolic ref (``git symbolic-ref refs/heads/alias refs/heads/trunk``) was
    printed as the commit: ``(commit ref: re)``."""
    from gpuwarden.cli.release import checkout_commit  # noqa: PLC0415

    head = _committed(tmp_path)
    _git(tmp_path, "symbolic-ref", "refs/heads/alias", "refs/heads/trunk")
    _git(tmp_path, "symbolic-ref", "HEAD", "refs/heads/alias")
    assert checkout_commit(tmp_path) == head


@pytest.mark.parametrize(
    ("damage", "content"),
    [
        pytest.param(".git/HEAD", b"\xff\xfe not text", id="head-not-utf8"),
        pytest.param(".git/refs/heads/trunk", b"\xff\xfe", id="ref-not-utf8"),
        pytest.param(".git/HEAD", b"0123456 not a commit\n", id="head-not-an-object-id"),
        pytest.param(".git", b"\xff gitdir", id="gitfile-not-utf8"),
        pytest.param(".git", b"gitdir: a\0b", id="gitfile-nul"),
    ],
)
def test_version_of_a_damaged_checkout_names_no_commit(tmp_path: Path, damage: str, content: bytes) -> None:
    """A .git file that is not text raised UnicodeDecodeError (a NUL in a gitdir: path, ValueError): a
    traceback for --version; text that is no object id was printed as the commit."""
    from gpuwarden.cli.release import checkout_commit  # noqa: PLC0415

    _committed(tmp_path)
    if damage == ".git":
        shutil.rmtree(tmp_path / ".git")
    (tmp_path / damage).write_bytes(content)
    assert checkout_commit(tmp_path) is None


def test_version_takes_no_commit_from_an_install_the_code_does_not_run_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip's record of a ``git+URL@REV`` install was read whatever copy of gpuwarden ran: a source tree
    without ``.git`` on PYTHONPATH, in front of such an install, was given the install's commit."""
    from gpuwarden.cli.release import installed_commit  # noqa: PLC0415

    record = tmp_path / "gpuwarden-0.1.0.dist-info"
    record.mkdir()
    (record / "METADATA").write_text("Metadata-Version: 2.1\nName: gpuwarden\nVersion: 0.1.0\n")
    vcs = {"url": "https://example.invalid/gpuwarden.git", "vcs_info": {"vcs": "git", "commit_id": "ab" * 20}}
    (record / "direct_url.json").write_text(json.dumps(vcs))
    monkeypatch.syspath_prepend(str(tmp_path))  # its gpuwarden/ is not here: the code runs from elsewhere
    assert metadata.distribution("gpuwarden").read_text("direct_url.json") is not None
    assert installed_commit() is None
    (tmp_path / "gpuwarden").symlink_to(Path(gpuwarden.__file__).resolve().parent)  # now it is
    assert installed_commit() == "ab" * 20
