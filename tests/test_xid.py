from __future__ import annotations

import pytest

from gpuwarden.xid import node_wide, out_of_service, parse_xid_catalog, xid_catalog


def test_the_shipped_catalog_says_which_xids_need_a_reset() -> None:
    catalog = xid_catalog()
    assert catalog[119].mnemonic == "GSP_RPC_TIMEOUT"
    assert [code for code in (79, 119, 48, 95, 13, 31, 43, 94) if out_of_service(code)] == [79, 119, 48, 95]


def test_an_unknown_xid_is_not_out_of_service() -> None:
    assert not out_of_service(99999)


def test_rows_without_a_numeric_xid_are_skipped() -> None:
    text = (
        "xid,mnemonic,description,immediate_action,investigatory_action\n"
        "abc,X,Y,RESET_GPU,\n"
        "62,PMU,halt, RESET_GPU ,\n"
    )
    assert list(parse_xid_catalog(text)) == [62]
    assert parse_xid_catalog(text)[62].out_of_service


@pytest.mark.parametrize(
    ("xid", "host"),
    [
        (79, True),
        (151, True),
        (167, True),
        (13, False),
        (31, False),
        (48, False),
        (119, False),
        (99999, False),
    ],
    ids=["79-restart-bm", "151-restart-vm", "167-pcie", "13", "31", "48", "119", "unknown"],
)
def test_only_an_xid_that_restarts_the_machine_or_is_a_pcie_fault_is_the_hosts(xid: int, host: bool) -> None:
    assert node_wide(xid) is host
