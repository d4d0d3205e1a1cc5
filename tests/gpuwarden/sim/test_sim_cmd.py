"""``gpuwarden sim`` against a real uvicorn server on a free 127.0.0.1 port."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import typer
import uvicorn
from starlette.applications import Starlette
from typer.testing import CliRunner

from gpuwarden.cli import sim_cmd
from gpuwarden.sim import FaultSpec, Fleet, fault_routes
from tests.http_stub import FixedAnswer
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
    assert bad_node.exit_code == 1 and "node-01" in bad_node.stderr
    assert "error: HTTP 400: node:" in bad_node.stderr  # as `incidents` says a refusal; it said "error: 400:"
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


def test_faults_lists_the_active_faults_and_all_of_them_with_all(server: str, fleet: Fleet) -> None:
    lost = fleet.inject(FaultSpec("xid", "node-01", gpu=3, xid=79))
    burst = fleet.inject(FaultSpec("nvlink_crc_burst", "node-02", gpu=1, link=4, params={"rate": 50.0}))
    fleet.clear_fault(lost)
    as_json = runner.invoke(_app(), ["sim", "faults", "--url", server, "-o", "json"])
    assert as_json.exit_code == 0, as_json.output
    listed = json.loads(as_json.stdout)
    assert [f["id"] for f in listed] == [burst]
    expected = fleet.active_faults()[0].to_dict() | {"started_at": 0, "state": "active"}
    assert listed[0] | {"started_at": 0} == expected  # the exporter's fields as they are, and the state
    everything = json.loads(
        runner.invoke(_app(), ["sim", "faults", "--url", server, "--all", "-o", "json"]).stdout
    )
    assert [(f["id"], f["end_reason"]) for f in everything] == [(lost, "cleared"), (burst, "")]

    table = runner.invoke(_app(), ["sim", "faults", "--url", server, "--all"])
    assert table.exit_code == 0, table.output
    rows = {line.split("│")[1].strip(): line for line in table.stdout.splitlines() if line.count("│") > 2}
    assert set(rows) == {lost, burst}
    assert "xid 79" in rows[lost] and "ended (cleared)" in rows[lost] and "gpu/node-01/3" in rows[lost]
    assert "link 4 rate=50.0" in rows[burst] and "active" in rows[burst]
    # The CLI's one format for times people read: RFC 3339 in UTC to the second.
    started = datetime.fromtimestamp(fleet.fault_log[0].started_at, UTC).replace(microsecond=0)
    assert started.isoformat().replace("+00:00", "Z") in rows[lost]


def test_faults_as_json_give_each_fault_the_state_the_table_shows(server: str, fleet: Fleet) -> None:
    lost = fleet.inject(FaultSpec("xid", "node-01", gpu=3, xid=79))
    burst = fleet.inject(FaultSpec("nvlink_crc_burst", "node-02", gpu=1, link=4, params={"rate": 50.0}))
    fleet.clear_fault(lost)
    argv = ["sim", "faults", "--url", server, "--all"]
    listed = json.loads(runner.invoke(_app(), [*argv, "-o", "json"]).stdout)
    table = runner.invoke(_app(), argv).stdout
    rows = {
        line.split("│")[1].strip(): line.split("│")[6].strip() for line in table.splitlines() if "│" in line
    }
    assert {f["id"]: f["state"] for f in listed} == {lost: "ended (cleared)", burst: "active"} == rows


def test_faults_with_none_says_so_on_stderr_and_prints_an_empty_list_as_json(server: str) -> None:
    table = runner.invoke(_app(), ["sim", "faults", "--url", server])
    assert table.exit_code == 0 and table.stdout == "" and table.stderr.strip() == "No active faults found."
    logged = runner.invoke(_app(), ["sim", "faults", "--url", server, "--all"])
    assert logged.exit_code == 0 and logged.stderr.strip() == "No faults found."
    as_json = runner.invoke(_app(), ["sim", "faults", "--url", server, "-o", "json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == [] and as_json.stderr == ""


def test_clear_ends_the_fault_and_a_repeated_clear_is_done_not_failed(server: str, fleet: Fleet) -> None:
    """A second clear of the same fault exited 1 ("error: 404: id: already ended"): it is over, as asked, so
    exit 0 with a note on stderr, as `kubectl delete --ignore-not-found`; an unknown id still exits 1."""
    hung = fleet.inject(FaultSpec("hung", "node-01", gpu=0))
    cleared = runner.invoke(_app(), ["sim", "clear", hung, "--url", server])
    assert cleared.exit_code == 0, cleared.output
    assert json.loads(cleared.stdout) == {"id": hung, "cleared": True}
    assert fleet.active_faults() == [] and fleet.fault_log[0].end_reason == "cleared"
    again = runner.invoke(_app(), ["sim", "clear", hung, "--url", server])
    assert again.exit_code == 0 and again.stdout == "", again.output
    assert again.stderr.strip() == f"note: fault {hung} had already ended; nothing to clear"
    unknown = runner.invoke(_app(), ["sim", "clear", "f-9999", "--url", server])
    assert unknown.exit_code == 1 and "error: HTTP 404: id: unknown fault id: 'f-9999'" in unknown.stderr


@pytest.mark.parametrize(
    ("fault_id", "said"),
    [(" ", "FAULT_ID ' ': empty;"), ("f-1/../x", "FAULT_ID 'f-1/../x': no fault id has a '/';")],
)
def test_clear_refuses_a_blank_id_or_one_with_a_slash_before_any_request(fault_id: str, said: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: a request would exit 1, "cannot reach"
    result = runner.invoke(_app(), ["sim", "clear", fault_id, "--url", url])
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.stderr.split())


def test_faults_and_clear_explain_a_url_that_is_no_simulated_exporter(server: str) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    down = runner.invoke(_app(), ["sim", "faults", "--url", nobody])
    assert down.exit_code == 1 and "cannot reach" in down.stderr and "--simulate" in down.stderr
    elsewhere = runner.invoke(_app(), ["sim", "clear", "f-0001", "--url", f"{server}/metrics"])
    said = " ".join(elsewhere.stderr.split())
    assert elsewhere.exit_code == 1
    assert (
        f"{server}/metrics/sim/faults/f-0001 answered 404: --url {server}/metrics is not an exporter or"
        " inference server running with --simulate" in said
    ), said


@pytest.mark.parametrize(
    ("status", "body", "told"),
    [
        (
            404,
            b'{"error": "path: no route for GET /sim/faults", "field": "path"}',
            "{0}/sim/faults answered 404: --url {0} is gpuwarden serve's API, not an exporter or"
            " inference server running with --simulate, whose /sim/faults injects faults (the exporter's"
            " default port is 9400)",
        ),
        (
            404,
            b"404 page not found\n",  # Prometheus' or node_exporter's (Go's) answer
            "{0}/sim/faults answered 404: --url {0} is not an exporter or inference server running"
            " with --simulate, whose /sim/faults injects faults (one started without --simulate, or another"
            " server, answers 404 there); check --url's host and port (the exporter's default port is 9400)",
        ),
        (
            404,
            b'{"detail": "Not Found"}',  # another JSON API's: not serve's
            "{0}/sim/faults answered 404: --url {0} is not an exporter",
        ),
        (
            502,
            b"<html>502 Bad Gateway</html>",
            "{}/sim/faults answered 502: 502 Bad Gateway (not",
        ),
        (
            502,  # nginx's page was printed whole, seven lines of HTML; the title says it in one
            b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad"
            b" Gateway</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n",
            "{}/sim/faults answered 502: 502 Bad Gateway (not the simulated exporter's answer",
        ),
        (200, b"hello", "{}/sim/faults answered 200: hello (not the simulated exporter's answer: is --url"),
        (200, b"\x1b[2Jhello\nmore", "{}/sim/faults answered 200: \\x1b[2Jhello... (not the simulated"),
    ],
    ids=[
        "gpuwarden-serve",
        "another-server-404",
        "another-json-api-404",
        "proxy-502",
        "nginx-502-page",
        "not-json",
        "terminal-escape",
    ],
)
def test_faults_at_a_url_that_is_no_simulated_exporter_name_the_url(
    status: int, body: bytes, told: str
) -> None:
    """`sim faults --url` at gpuwarden serve said "error: 404: path: no route for GET /sim/faults", at a
    proxy "error: 502: <html>...": neither named the URL; a 200 not JSON was shown as {'error': 'hello'}. A
    404 said "fault injection exists only when the exporter runs with --simulate", whatever --url named."""
    stub = FixedAnswer(status, body)
    try:
        result = runner.invoke(_app(), ["sim", "faults", "--url", stub.url])
    finally:
        stub.close()
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1 and told.format(stub.url) in said, said
    assert "{'error'" not in said and "<" not in said and "\x1b" not in result.stderr, said
