"""The README's table of dcgm-exporter's default counters agrees with the family table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exporters import fields

README = Path(__file__).resolve().parents[2] / "README.md"

# dcgm-exporter's default set: the uncommented rows of its etc/default-counters.csv and
# etc/dcp-metrics-included.csv, with the Prometheus type each gives (facts read from those files).
DCGM_EXPORTER_DEFAULTS = {
    "DCGM_FI_DEV_SM_CLOCK": "gauge",
    "DCGM_FI_DEV_MEM_CLOCK": "gauge",
    "DCGM_FI_DEV_MEMORY_TEMP": "gauge",
    "DCGM_FI_DEV_GPU_TEMP": "gauge",
    "DCGM_FI_DEV_POWER_USAGE": "gauge",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "counter",
    "DCGM_FI_DEV_PCIE_TX_THROUGHPUT": "counter",
    "DCGM_FI_DEV_PCIE_RX_THROUGHPUT": "counter",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": "counter",
    "DCGM_FI_DEV_GPU_UTIL": "gauge",
    "DCGM_FI_DEV_MEM_COPY_UTIL": "gauge",
    "DCGM_FI_DEV_ENC_UTIL": "gauge",
    "DCGM_FI_DEV_DEC_UTIL": "gauge",
    "DCGM_FI_DEV_XID_ERRORS": "gauge",
    "DCGM_FI_DEV_FB_FREE": "gauge",
    "DCGM_FI_DEV_FB_USED": "gauge",
    "DCGM_FI_DEV_FB_RESERVED": "gauge",
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": "counter",
    "DCGM_FI_DEV_VGPU_LICENSE_STATUS": "gauge",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": "counter",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": "counter",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": "gauge",
    "DCGM_FI_DRIVER_VERSION": "label",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "gauge",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "gauge",
    "DCGM_FI_PROF_DRAM_ACTIVE": "gauge",
    "DCGM_FI_PROF_PCIE_TX_BYTES": "gauge",
    "DCGM_FI_PROF_PCIE_RX_BYTES": "gauge",
}


def _readme_rows() -> dict[str, tuple[str, str]]:
    """Each family of the README's defaults table: (the type there, what is served here)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("dcgm-exporter's default counters, and which are served here")
    rows: dict[str, tuple[str, str]] = {}
    for line in text[start:].splitlines()[1:]:
        if line.startswith("Exit status:"):
            break
        cells = (
            [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("| `") else []
        )
        if len(cells) == 3:
            for short in re.findall(r"`([A-Z0-9_]+)`", cells[0]):
                rows["DCGM_FI_" + short] = (cells[1], cells[2])
    return rows


def test_readme_lists_every_dcgm_exporter_default_with_its_type_there() -> None:
    rows = _readme_rows()
    assert {name: rows[name][0] for name in rows} == DCGM_EXPORTER_DEFAULTS


@pytest.mark.parametrize("name", sorted(DCGM_EXPORTER_DEFAULTS), ids=lambda n: n.removeprefix("DCGM_FI_"))
def test_readme_says_what_is_served_as_the_family_table_serves_it(name: str) -> None:
    here = _readme_rows()[name][1]
    family = fields.BY_NAME.get(name)
    if here.startswith("not served"):
        assert family is None
    elif here.startswith("label"):
        assert family is None  # a label on the families, not a family of its own
    else:
        assert family is not None, f"README says {name} is served; exporters.fields has no such family"
        assert here.split(" ")[0] == family.kind.value
