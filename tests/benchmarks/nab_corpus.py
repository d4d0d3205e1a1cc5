"""The NAB corpus the benchmark tests read, and a small part of it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

NAB = Path("/work/shared/data/nab")  # as tests/anomaly/test_nab.py: the project's ../shared


# The shortest labelled files of three categories, two in one (a category fold of two files): the harness
# steps every file together, as long as the longest, so these 1,625 steps a candidate, not 4,032.
FILES = [
    "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv",
    "realAdExchange/exchange-2_cpm_results.csv",
    "realAdExchange/exchange-3_cpm_results.csv",
    "realTraffic/speed_7578.csv",
]


def small_corpus(folder: Path) -> tuple[Path, Path]:
    """``FILES`` copied under ``folder``: its data folder and windows file."""
    windows = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    for name in FILES:
        (folder / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(NAB / "data" / name, folder / "data" / name)
    (folder / "windows.json").write_text(json.dumps({n: windows[n] for n in FILES}))
    return folder / "data", folder / "windows.json"
