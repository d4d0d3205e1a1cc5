"""``gpuwarden sim`` against a real uvicorn server on a free 127.0.0.1 port."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
import typer
import uvicorn
from starlette.applications import Starlette
from typer.testing import CliRunner

from gpuwarden.cli import sim_cmd
from gpuwarden.sim import Fleet, fault_routes
from tests.integration.servers import free_port

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    sim_cmd.register(app)

    @app.callback()
    def root() -> None:
        """Root for the test."""

    return app


@pytest.fixture
def server(fleet: Fleet) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        Starlette(routes=fault_routes(fleet)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    started = threading.Event()
    for _ in range(200):
        if srv.started:
            started.set()
            break
        started.wait(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def test_inject_posts_the_fault_and_prints_the_answer(server: str, fleet: Fleet) -> None:
    result = runner.invoke(
        _app(),
        ["sim", "inject", "xid", "--url", server, "--node", "node-01", "--gpu", "3", "--xid", "79"],
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["kind"] == "xid"
    assert fleet.gpu("node-01", 3).lost
    assert fleet.fault_log[-1].id == answer["id"]


def test_inject_passes_link_and_numeric_params(server: str, fleet: Fleet) -> None:
    result = runner.invoke(
        _app(),
        [
            "sim", "inject", "nvlink_crc_burst", "--url", server, "--node", "node-02", "--gpu", "1",
            "--link", "4", "--param", "rate=50", "--param", "duration=2.5",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    spec = fleet.fault_log[-1].spec
    assert spec.link == 4 and spec.params == {"rate": 50.0, "duration": 2.5}


@pytest.mark.parametrize("spelling", ["XID", "Xid"])
def test_inject_takes_the_kind_in_any_case(server: str, fleet: Fleet, spelling: str) -> None:
    """``sim inject XID`` was sent as is and refused by the exporter; every other choice of the CLI is taken
    in any case (``--priority p1``, ``-o JSON``)."""
    result = runner.invoke(
        _app(),
        ["sim", "inject", spelling, "--url", server, "--node", "node-01", "--gpu", "3", "--xid", "79"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["kind"] == "xid"
    assert fleet.fault_log[-1].spec.kind == "xid"


def test_inject_refuses_an_unknown_kind_before_posting_and_lists_the_kinds() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: a post would exit 1, "cannot reach"
    result = runner.invoke(_app(), ["sim", "inject", "meltdown", "--url", url, "--node", "node-01"])
    assert result.exit_code == 2, result.output
    assert "KIND 'meltdown': use one of xid, ecc_sbe_storm," in " ".join(result.stderr.split())
    assert "undrain_node" in result.stderr


def test_inject_exits_1_with_the_servers_message_on_bad_input(server: str, fleet: Fleet) -> None:
    bad_node = runner.invoke(_app(), ["sim", "inject", "hung", "--url", server, "--node", "nx", "--gpu", "0"])
    assert bad_node.exit_code == 1 and "400: node:" in bad_node.stderr and "node-01" in bad_node.stderr
    assert fleet.fault_log == []


def test_inject_explains_an_unreachable_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(_app(), ["sim", "inject", "hung", "--url", url, "--node", "node-01", "--gpu", "0"])
    assert result.exit_code == 1
    assert "cannot reach" in result.stderr and "--simulate" in result.stderr


def test_show_prints_topology_and_workloads_as_json() -> None:
    result = runner.invoke(_app(), ["sim", "show", "--simulate", "2x4", "--output", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [n["name"] for n in data["nodes"]] == ["node-01", "node-02"]
    assert len(data["nodes"][0]["gpus"]) == 4
    assert data["training_jobs"][0]["ranks"]["0"] == "gpu/node-01/0"
    assert [s["name"] for s in data["inference_services"]] == [
        "llm-chat"
    ]  # 2 serving GPUs: no room for embed


def test_show_table_and_bad_spec() -> None:
    table = runner.invoke(_app(), ["sim", "show", "--simulate", "1x8"])
    assert table.exit_code == 0 and "node-01" in table.stdout and "pretrain-01" in table.stdout
    bad = runner.invoke(_app(), ["sim", "show", "--simulate", "two-by-eight"])
    # A bad option, as `exporter --simulate` says it: exit 2, the option and the value named once each.
    said = " ".join(bad.stderr.split())
    assert bad.exit_code == 2 and said == "error: --simulate 'two-by-eight': expected NODESxGPUS such as 2x8"
