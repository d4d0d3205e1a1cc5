"""Where the NAB harnesses (``nab_cv.py``, ``nab_vs_htm.py``) find the corpus, and their refusal of a
missing one.

The defaults are found from this file, never from the current directory: ``shared/data/nab`` inside the
repository, else beside it (``../shared``, the layout of the development machines), else beside the main
checkout when this is a git worktree of it. A corpus that is not there is refused naming ``--data`` or
``--windows``, with the paths that were tried, instead of a traceback; so is a ``--data`` lacking some of the
files ``--windows`` names.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from gpuwarden.errors import InputError

if TYPE_CHECKING:
    from anomaly.nab import NabFile

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path("shared") / "data" / "nab"
WINDOWS = Path("labels") / "combined_windows.json"


def main_checkout(repo: Path) -> Path | None:
    """The main checkout of ``repo`` when ``repo`` is a git worktree (its ``.git`` is a file naming the
    worktree's git directory, whose ``commondir`` leads to the main ``.git``); else None."""
    marker = repo / ".git"
    if not marker.is_file():
        return None
    first = marker.read_text(encoding="utf-8", errors="replace").partition("\n")[0]
    if not first.startswith("gitdir:"):
        return None
    gitdir = (repo / first.removeprefix("gitdir:").strip()).resolve()
    common = gitdir / "commondir"
    if not common.is_file():
        return None
    main_git = (gitdir / common.read_text(encoding="utf-8").strip()).resolve()
    return main_git.parent if main_git.name == ".git" else None


def corpus_candidates(repo: Path = REPO) -> list[Path]:
    """Where the corpus is looked for, in order."""
    roots = [repo]
    main = main_checkout(repo)
    if main is not None and main != repo:
        roots.append(main)
    return [base / CORPUS for root in roots for base in (root, root.parent)]


def default_corpus(repo: Path = REPO) -> Path | None:
    """The first candidate that is a directory, or None."""
    return next((path for path in corpus_candidates(repo) if path.is_dir()), None)


def corpus_parser(doc: str) -> argparse.ArgumentParser:
    """A NAB harness's parser: its docstring's first line as description, the corpus options added."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_corpus_options(parser)
    return parser


def frozen_grid_options(doc: str) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The command line of a harness that scores a declared grid and, with ``--held-out``, the setting frozen
    on tune; read before its heavy imports (numpy, the anomaly stage): ``--help`` answers at once."""
    parser = corpus_parser(doc)
    parser.add_argument(
        "--held-out", action="store_true", help="also score held-out for the setting frozen on tune"
    )
    return parser, parser.parse_args()


def add_corpus_options(parser: argparse.ArgumentParser) -> None:
    """``--data`` and ``--windows``, defaulting to the corpus found from this repository."""
    found = default_corpus()
    where = str(found) if found is not None else f"{REPO / CORPUS} or {REPO.parent / CORPUS}"
    parser.add_argument("--data", type=Path, help=f"the corpus's data/ folder (default: {where}/data)")
    parser.add_argument("--windows", type=Path, help=f"its label windows (default: {where}/{WINDOWS})")


def load_checked_corpus(
    parser: argparse.ArgumentParser, args: argparse.Namespace, repo: Path = REPO
) -> list[NabFile]:
    """The corpus ``args`` name (or the default one), or ``parser.error`` (exit 2) naming the option."""
    data: Path | None = args.data
    windows: Path | None = args.windows
    if data is None or windows is None:
        corpus = default_corpus(repo)
        if corpus is None:
            tried = ", ".join(str(path) for path in corpus_candidates(repo))
            parser.error(
                f"--data/--windows: no NAB corpus found relative to the repository (tried {tried}); pass"
                " --data DIR and --windows FILE"
            )
        data = data or corpus / "data"
        windows = windows or corpus / WINDOWS
    if not data.is_dir():
        parser.error(f"--data {data}: not a directory (the NAB corpus's data/ folder)")
    if not windows.is_file():
        parser.error(f"--windows {windows}: no such file (the NAB corpus's {WINDOWS})")
    # The anomaly stage (numpy, pandas: seconds) only once the corpus is read, so that a harness's --help and
    # a refused option, which need only add_corpus_options, answer at once.
    from anomaly.nab import first_names, read_corpus  # noqa: PLC0415

    try:
        files, missing = read_corpus(data, windows)
    except InputError as exc:
        option, value = ("--windows", windows) if exc.field == "windows" else ("--data", data)
        parser.error(f"{option} {value}: {exc.message.removeprefix(f'{value}: ')}")  # the file said once
    if not files:
        parser.error(f"--data {data}: holds none of the files that --windows {windows} names")
    if missing:  # a partial corpus' figures read as the whole corpus' (as `anomaly evaluate nab` refuses)
        parser.error(
            f"--data {data}: lacks {len(missing)} of the {len(files) + len(missing)} files {windows} names"
            f" ({first_names(missing)}); give the whole corpus, or a --windows naming only the files to score"
        )
    return files
