"""NVIDIA's XID catalog (``gpuwarden/data/xid_catalog.csv``): what each XID means and what it needs.

Shared by the stages: the anomaly service maps an XID to a recommended action, the incident engine needs
to know whether an XID took the GPU out of service (its immediate action is a GPU reset or a reboot) to
compute the impact and the priority.
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from gpuwarden.model import RecommendedAction

# Immediate actions after which the GPU does no work until it is reset or its machine restarted.
OUT_OF_SERVICE_ACTIONS = frozenset({"RESET_GPU", "RESTART_BM", "RESTART_VM", "WORKFLOW_XID_48"})


@dataclass(frozen=True, slots=True)
class XidEntry:
    """One row of NVIDIA's XID catalog."""

    xid: int
    mnemonic: str
    description: str
    immediate_action: str
    investigatory_action: str

    @property
    def out_of_service(self) -> bool:
        """True when the GPU stops working until a reset or reboot (XID 79, 119, 48, ...)."""
        return self.immediate_action in OUT_OF_SERVICE_ACTIONS


def parse_xid_catalog(text: str) -> dict[int, XidEntry]:
    """Parse the catalog's CSV text; rows without a numeric ``xid`` are skipped."""
    catalog = {}
    for row in csv.DictReader(io.StringIO(text)):
        try:
            xid = int(row["xid"])
        except (TypeError, ValueError):
            continue
        catalog[xid] = XidEntry(
            xid=xid,
            mnemonic=row.get("mnemonic") or "",
            description=row.get("description") or "",
            immediate_action=(row.get("immediate_action") or "").strip(),
            investigatory_action=(row.get("investigatory_action") or "").strip(),
        )
    return catalog


def xid_catalog_file() -> str:
    """Where the catalog shipped with the package is, for a person to read (``anomaly xid`` names it)."""
    return str(_catalog_resource())


@functools.cache
def xid_catalog() -> dict[int, XidEntry]:
    """The catalog shipped with the package, parsed once."""
    return parse_xid_catalog(_catalog_resource().read_text(encoding="utf-8"))


def _catalog_resource() -> Traversable:
    return resources.files("gpuwarden.data").joinpath("xid_catalog.csv")


def out_of_service(xid: int) -> bool:
    """True when the catalog says XID ``xid`` takes the GPU out of service (unknown XIDs: False)."""
    entry = xid_catalog().get(xid)
    return entry is not None and entry.out_of_service


# Immediate actions that restart the whole machine: the fault is the host's, not one GPU's.
NODE_WIDE_ACTIONS = frozenset({"RESTART_BM", "RESTART_VM"})


def node_wide(xid: int) -> bool:
    """True when XID ``xid`` may be the cause of any fault on its machine: the catalog's immediate action
    restarts the machine (79 RESTART_BM, 151 RESTART_VM), or it is a PCIe fault, the host's link (167
    PCIE_FATAL_TIMEOUT). Other XIDs (13, 31, 119, ...) are their GPU's fault; unknown ones too."""
    entry = xid_catalog().get(xid)
    return entry is not None and (
        entry.immediate_action in NODE_WIDE_ACTIONS or entry.mnemonic.startswith("PCIE_")
    )


_BUCKETS = {
    "RESTART_APP": RecommendedAction.RESTART_APP,
    "RESET_GPU": RecommendedAction.DRAIN_AND_RESET,
    "RESTART_BM": RecommendedAction.RESTART_NODE,
    "RESTART_VM": RecommendedAction.RESTART_NODE,
    "IGNORE": RecommendedAction.IGNORE,
    "CONTACT_SUPPORT": RecommendedAction.CONTACT_SUPPORT,
    "WORKFLOW_XID_48": RecommendedAction.DRAIN_AND_RESET,
}


def xid_action(entry: XidEntry) -> RecommendedAction:
    """The catalog's immediate action as a gpuwarden action (unknown buckets: investigate)."""
    return _BUCKETS.get(entry.immediate_action, RecommendedAction.INVESTIGATE)


def follow_up_for_xid(xid: int) -> RecommendedAction | None:
    """The catalog's follow-up (investigatory) action for XID ``xid`` where it is one gpuwarden recommends:
    XID 79's ``CONTACT_SUPPORT`` after the reboot. None for the others (a workflow, "check the application"),
    for an XID whose immediate action is to ignore it (63, 92: informational), and for one whose immediate
    action does not restart the machine: some 60 XIDs (39 a copy-engine exception: restart the
    application; 46: reset the GPU) have CONTACT_SUPPORT as the follow-up for a fault that recurs, not for
    its first alert."""
    entry = xid_catalog().get(xid)
    if (
        entry is None
        or entry.immediate_action not in NODE_WIDE_ACTIONS
        or entry.investigatory_action != "CONTACT_SUPPORT"
    ):
        return None
    return RecommendedAction.CONTACT_SUPPORT


def action_for_xid(xid: int) -> RecommendedAction:
    """What the catalog says to do after XID ``xid``; an XID the catalog lacks: investigate."""
    entry = xid_catalog().get(xid)
    return xid_action(entry) if entry is not None else RecommendedAction.INVESTIGATE
