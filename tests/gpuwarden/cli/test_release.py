"""``gpuwarden --version``: the release and the commit it was built from."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

from typer.testing import CliRunner

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
