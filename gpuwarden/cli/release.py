"""``gpuwarden --version``: the release (the package's version) and the commit it was built from, as
``promtool --version`` names its revision. gpuwarden's releases are named by commit (see README, Upgrading),
and ``pyproject.toml`` says 0.1.0 throughout, so the commit is what tells two installations apart."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import gpuwarden

PACKAGE = "gpuwarden"
SHORT = 7  # as `git log --oneline`, README's Upgrading and CHANGELOG.md name a commit


def version_text() -> str:
    """``gpuwarden 0.1.0 (commit 01fe3f4)``; without the commit where none is known."""
    try:
        version = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "unknown"
    commit = checkout_commit(Path(gpuwarden.__file__).resolve().parents[1]) or installed_commit()
    return f"{PACKAGE} {version}" + (f" (commit {commit[:SHORT]})" if commit else "")


def installed_commit() -> str | None:
    """The commit pip installed the package from (``pip install git+URL@REV``: PEP 610's direct_url.json)."""
    try:
        text = metadata.distribution(PACKAGE).read_text("direct_url.json")
        commit = json.loads(text or "{}").get("vcs_info", {}).get("commit_id")
    except (metadata.PackageNotFoundError, ValueError, AttributeError):
        return None
    return commit if isinstance(commit, str) and commit else None


def checkout_commit(tree: Path) -> str | None:
    """The commit checked out in the git work tree ``tree`` (the source the running code was imported
    from), read from its files rather than by running git: HEAD, then the branch it names (a loose ref, or
    packed-refs). Uncommitted changes are not told. None: no work tree, or a HEAD it cannot follow."""
    git = tree / ".git"
    try:
        if git.is_file():  # a linked worktree (`git worktree add`): ``gitdir: PATH``
            git = (tree / git.read_text().removeprefix("gitdir:").strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None  # detached
        common = git / (git / "commondir").read_text().strip() if (git / "commondir").is_file() else git
        return _ref(common, head.removeprefix("ref:").strip())
    except OSError:
        return None


def _ref(common: Path, ref: str) -> str | None:
    """The commit of branch ``ref`` (``refs/heads/main``) in the repository ``common``."""
    loose = common / ref
    if loose.is_file():
        return loose.read_text().strip() or None
    packed = common / "packed-refs"
    lines = packed.read_text().splitlines() if packed.is_file() else []
    return next((line.split()[0] for line in lines if line.endswith(f" {ref}")), None)
