"""gpuwarden's default detector against Numenta HTM on the same NAB files: one JSON line.

The published HTM score (70.5, or 70.1 from the per-file results below) is over NAB's 58 files; the corpus
here has 41 of them. NAB publishes each detector's raw score per file, so HTM's standard-profile score can
be normalised over exactly these files, with the same windows and the same normalisation as ours
(``100 * (raw - null) / (perfect - null)``, null = -windows, perfect = +windows). This prints both, for the
tune split, the held-out split, all files, and per category and split.

HTM's per-file raw scores: ``benchmarks/data/nab_numenta_htm_standard.csv`` (figures from
github.com/numenta/NAB, ``results/numenta/numenta_standard_scores.csv`` at commit 4b89baf; that file's
58-file total normalises to 70.1 this way, which checks the normalisation).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# light: the anomaly stage only once a corpus is read
from nab_inputs import corpus_parser, load_checked_corpus

HERE = Path(__file__).resolve().parent


def _options() -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The command line (and its parser, which refuses a missing corpus), read before the heavy imports
    below (numpy, the anomaly stage): ``--help`` and an unknown option answer at once."""
    parser = corpus_parser(__doc__)
    parser.add_argument("--htm", type=Path, default=HERE / "data" / "nab_numenta_htm_standard.csv")
    return parser, parser.parse_args()


if __name__ == "__main__":
    PARSER, OPTIONS = _options()

from anomaly.nab import FileScore, evaluate, is_tuning_file  # noqa: E402 - imported after the command line is read


def htm_scores(path: Path) -> dict[str, float]:
    """File name -> HTM's raw standard-profile score."""
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return {row["file"]: float(row["raw_score"]) for row in csv.DictReader(lines)}


def normalised(raw: float, windows: int) -> float | None:
    return round(100.0 * (raw + windows) / (2 * windows), 1) if windows else None


def main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    files = load_checked_corpus(parser, args)
    if not args.htm.is_file():
        parser.error(f"--htm {args.htm}: no such file (Numenta HTM's per-file scores)")
    htm = htm_scores(args.htm)
    missing = sorted(f.name for f in files if f.name not in htm)
    if missing:
        raise SystemExit(f"{args.htm}: no HTM score for {', '.join(missing)}")
    report = evaluate(files)
    standard: dict[str, FileScore] = {name: parts["standard"] for name, parts in report.per_file.items()}

    def both(names: list[str]) -> dict[str, object]:
        windows = sum(standard[n].windows for n in names)
        return {
            "files": len(names),
            "windows": windows,
            "gpuwarden": normalised(sum(standard[n].raw for n in names), windows),
            "numenta_htm": normalised(sum(htm[n] for n in names), windows),
        }

    names = sorted(standard)
    groups: dict[str, dict[str, object]] = {
        "tune": both([n for n in names if is_tuning_file(n)]),
        "held_out": both([n for n in names if not is_tuning_file(n)]),
        "all": both(names),
    }
    for category in sorted({n.split("/")[0] for n in names}):
        for split, tune in (("tune", True), ("held_out", False)):
            chosen = [n for n in names if n.startswith(category + "/") and is_tuning_file(n) == tune]
            if chosen:
                groups[f"{category}/{split}"] = both(chosen)
    print(json.dumps({"bench": "nab_vs_numenta_htm", "profile": "standard", "groups": groups}))


if __name__ == "__main__":
    main(PARSER, OPTIONS)
