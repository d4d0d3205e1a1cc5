"""``gpuwarden --version``: the release (the package's version) and the commit it was built from, as
``promtool --version`` names its revision. gpuwarden's releases are named by commit (see README, Upgrading),
and ``pyproject.toml`` says 0.1.0 throughout, so the commit is what tells two installations apart."""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

import gpuwarden

PACKAGE = "gpuwarden"
SHORT = 7  # as `git log --oneline`, README's Upgrading and CHANGELOG.md name a commit
SYMREF_HOPS = 5  # HEAD -> a branch -> (rarely) the branch it is a symbolic ref to: git itself stops at 5
OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1, or SHA-256 (extensions.objectFormat)


def version_text() -> str:
    """``gpuwarden 0.1.0 (commit 01fe3f4)``; without the commit where none is known."""
    try:
        version = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "unknown"
    commit = checkout_commit(Path(gpuwarden.__file__).resolve().parents[1]) or installed_commit()
    return f"{PACKAGE} {version}" + (f" (commit {commit[:SHORT]})" if commit else "")


def installed_commit() -> str | None:
    """The commit pip installed the package from (``pip install git+URL@REV``: PEP 610's direct_url.json),
    if the running code is that install's (not a copy on PYTHONPATH in front of it)."""
    try:
        dist = metadata.distribution(PACKAGE)
        running = Path(gpuwarden.__file__).resolve()
        if Path(str(dist.locate_file(f"{PACKAGE}/__init__.py"))).resolve() != running:
            return None
        text = dist.read_text("direct_url.json")
        commit = json.loads(text or "{}").get("vcs_info", {}).get("commit_id")
    except (metadata.PackageNotFoundError, OSError, ValueError, AttributeError):
        return None
    return commit if isinstance(commit, str) and commit else None


def checkout_commit(tree: Path) -> str | None:
    """The commit checked out in the git work tree ``tree`` (the source the running code was imported
    from), read from its files rather than by running git: HEAD, then the branch it names (a loose ref, or
    packed-refs), through symbolic refs. Uncommitted changes are not told. None: no work tree, or a HEAD it
    cannot follow to an object id (a damaged file is never a traceback, nor shown as a commit)."""
    git = tree / ".git"
    try:
        if git.is_file():  # a linked worktree (`git worktree add`) or a submodule: ``gitdir: PATH``
            git = (tree / git.read_text().removeprefix("gitdir:").strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        common = git / (git / "commondir").read_text().strip() if (git / "commondir").is_file() else git
        for _ in range(SYMREF_HOPS):
            if not head.startswith("ref:"):
                return head if OBJECT_ID.fullmatch(head) else None  # detached, or the branch's commit
            head = _ref(common, head.removeprefix("ref:").strip()) or ""
    except (OSError, ValueError):  # unreadable, not UTF-8 text, a NUL in a gitdir: path
        return None
    return None


def _ref(common: Path, ref: str) -> str | None:
    """What branch ``ref`` (``refs/heads/main``) holds in the repository ``common``: a commit, or another
    ref (``ref: refs/heads/trunk``)."""
    loose = common / ref
    if loose.is_file():
        return loose.read_text().strip() or None
    packed = common / "packed-refs"
    lines = packed.read_text().splitlines() if packed.is_file() else []
    return next((line.split()[0] for line in lines if line.endswith(f" {ref}")), None)
