"""`gpuwarden sim`: what a simulated fleet looks like, and what `sim inject` refuses before posting."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from gpuwarden.cli import app
from gpuwarden.clock import FakeClock
from gpuwarden.config import load_config
from gpuwarden.inventory_api import inventory_from_fleet
from gpuwarden.sim.fleet import Fleet, build_fleet
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.http_stub import FixedAnswer
from tests.integration.servers import free_port

runner = BuiltCliRunner()


def test_the_table_shows_pci_bus_ids_as_they_are_not_as_emoji() -> None:
    result = runner.invoke(app, ["sim", "show", "--simulate", "1x8"])
    assert result.exit_code == 0, result.output
    listed = json.loads(runner.invoke(app, ["sim", "show", "--simulate", "1x8", "--output", "json"]).stdout)
    bus_ids = [g["pci_bus_id"] for g in listed["nodes"][0]["gpus"]]
    assert "00000000:AB:00.0" in bus_ids  # Rich would read ":ab:" as an emoji code
    for bus_id in bus_ids:
        assert bus_id in result.stdout
    assert "\U0001f18e" not in result.stdout


def test_the_table_at_an_80_column_terminal_folds_each_uuid_and_cuts_none() -> None:
    """At the terminal's default 80 columns rich cut every UUID to ``GPU-6bf2ba6…`` (README: a table folds a
    long cell onto more lines)."""
    result = runner.invoke(app, ["sim", "show", "--simulate", "1x2"], env={"COLUMNS": "80"})
    listed = json.loads(runner.invoke(app, ["sim", "show", "--simulate", "1x2", "-o", "json"]).stdout)
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout, result.stdout
    uuids = "".join(line.split("│")[5].strip() for line in result.stdout.splitlines() if line.count("│") == 8)
    assert uuids == "".join(g["uuid"] for g in listed["nodes"][0]["gpus"]), result.stdout


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--gpu", "-1", "-1: use a whole number from 0 to 255"),
        ("--gpu", "256", "256: use a whole number from 0 to 255"),
        ("--xid", "0", "0: use a whole number from 1 to 999"),
        ("--xid", "1000", "1000: use a whole number from 1 to 999"),
        ("--link", "36", "36: use a whole number from 0 to 35"),
        ("--timeout", "0", "0: use a number from 0.1 to"),
        # Not a number in Go's syntax: refused as written, quoted as every value that is not a number.
        ("--timeout", "nan", "'nan': use a number from 0.1 to"),
    ],
    ids=[
        "gpu-negative",
        "gpu-too-high",
        "xid-zero",
        "xid-too-high",
        "link-too-high",
        "timeout-0",
        "timeout-nan",
    ],
)
def test_inject_refuses_an_option_out_of_bounds_in_one_line_before_posting(
    option: str, value: str, said: str
) -> None:
    # These went to the server as typed (an unreachable one here: "cannot reach", exit 1), or, for a zero
    # or NaN timeout, to httpx; the bounds are the exporter's own (`parse_fault`).
    argv = ["sim", "inject", "xid", "--url", "http://127.0.0.1:9", "--node", "node-01", "--gpu", "0"]
    argv += ["--xid", "79", option, value]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {option} {said}"), line


@pytest.mark.parametrize(
    ("param", "said"),
    [
        ("factor=1e999", "'factor=1e999': 1e999 is more than a number can hold"),
        ("duration=1_000", "'duration=1_000': not a number as the command line takes one"),
        ("duration= 5", "'duration= 5': not a number as the command line takes one"),
    ],
    ids=["overflows", "underscore", "blank"],
)
def test_inject_refuses_a_param_not_written_as_a_number_option_takes_one(param: str, said: str) -> None:
    """1e999 was posted as inf: json.dumps raised (a traceback); 1_000 and ' 5' were posted as 1000 and 5,
    which every number option refuses (``gpuwarden.numerals``)."""
    argv = ["sim", "inject", "straggler", "--url", "http://127.0.0.1:9", "--node", "node-01", "--gpu", "0"]
    result = runner.invoke(app, [*argv, "--param", param])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: --param {said}"), line


@pytest.mark.parametrize(
    ("kind", "params", "said"),
    [
        ("straggler", ["bogus"], "--param 'bogus': expected NAME=VALUE such as duration=60"),
        (
            "straggler",
            ["bogus=1"],
            "--param 'bogus=1': unknown parameter 'bogus' for kind straggler; valid: duration, factor",
        ),
        (
            "reset_gpu",
            ["duration=5"],
            "--param 'duration=5': unknown parameter 'duration' for kind reset_gpu; valid: none",
        ),
        (  # "between 0 and 1e+12": a bound that 0 breaks too
            "straggler",
            ["factor=-1"],
            "--param 'factor=-1': must be more than 0 and less than 1 (the share of its clock or speed the"
            " GPU keeps), got -1",
        ),
        (
            "xid",
            ["count=-1"],
            "--param 'count=-1': must be a whole number from 1 to 10000, got -1",
        ),
        ("straggler", ["factor=abc"], "--param 'factor=abc': must be a finite number, got 'abc'"),
        (
            "straggler",
            ["duration=5min"],
            "--param 'duration=5min': '5min' is not a number; write the seconds",
        ),
        ("xid", ["count=0"], "--param 'count=0': must be a whole number from 1 to 10000"),
        ("straggler", ["factor=0"], "--param 'factor=0': must be more than 0 and less than 1"),
        (
            "straggler",
            ["duration=5", "factor=0.5", "duration=6"],
            "--param 'duration=6': duration given twice; give it once",
        ),
    ],
    ids=[
        "no-equals",
        "unknown",
        "none-taken",
        "negative",
        "negative-count",
        "text",
        "spoken-duration",
        "count-0",
        "factor-0",
        "twice",
    ],
)
def test_inject_refuses_a_bad_param_naming_it_as_typed_before_posting(
    kind: str, params: list[str], said: str
) -> None:
    """An unknown name or a value the exporter refuses was posted: exit 1 with the server's ``400: params:
    ...`` (or "cannot reach"), and ``--param bogus`` said ``invalid value for --param: ...; see --help``;
    every other bad option is said ``error: OPTION VALUE: what to give``, exit 2, before any request."""
    argv = ["sim", "inject", kind, "--url", "http://127.0.0.1:9", "--node", "node-01", "--gpu", "0"]
    argv += ["--xid", "79"] if kind == "xid" else []
    result = runner.invoke(app, [*argv, *(item for p in params for item in ("--param", p))])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {said}"), line


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["xid", "--node", "node-01", "--gpu", "0"], "--xid: required for kind xid: the XID code, e.g. 79"),
        (["hung", "--gpu", "0"], '--node: required for kind hung, e.g. "node-01"'),
        (["hung", "--node", "node-01"], "--gpu: required for kind hung: the GPU index on the node, e.g. 0"),
        (
            ["node_down", "--node", "node-01", "--gpu", "0"],
            "--gpu 0: kind node_down acts on the whole node; remove --gpu",
        ),
        (
            ["straggler", "--node", "node-01", "--gpu", "0", "--xid", "79"],
            "--xid 79: only valid for kind xid, not straggler; remove it",
        ),
        (
            ["hung", "--node", "node-01", "--gpu", "0", "--link", "3"],
            "--link 3: only valid for nvlink_down and nvlink_crc_burst, not hung",
        ),
    ],
    ids=[
        "xid-without-xid",
        "without-node",
        "without-gpu",
        "gpu-of-node-kind",
        "xid-of-other-kind",
        "link-of-other-kind",
    ],
)
def test_inject_refuses_an_option_its_kind_needs_or_does_not_take_as_a_usage_error_before_posting(
    argv: list[str], said: str
) -> None:
    """``sim inject xid`` without ``--xid`` was posted: exit 1 with the exporter's ``400: xid: required ...``
    (here, unreachable, "cannot reach"), as if the exporter had failed; a missing option is a usage error.
    One its kind does not take said ``--gpu: ...; remove gpu``, without the value given, and the exporter's
    field name for the option to remove."""
    result = runner.invoke(app, ["sim", "inject", *argv, "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {said}"), line


def test_sim_show_prints_a_warmed_fleets_topology_without_warming_every_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``sim show --simulate 1024x8`` took 24 s, nearly all in the 30 warm-up steps of every GPU, which
    change no field it prints."""
    warmed = build_fleet(3, 4, seed=5, clock=FakeClock()).describe()
    steps = _count_warm_up_steps(monkeypatch)
    argv = ["sim", "show", "--simulate", "3x4", "--seed", "5"]
    shown = runner.invoke(app, [*argv, "--output", "json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == warmed
    assert runner.invoke(app, argv).exit_code == 0
    assert steps == []


def _count_warm_up_steps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The warm-up steps fleets take from now on (the only steps without the jobs)."""
    steps: list[float] = []
    step = Fleet._step

    def counted(fleet: Fleet, now: float, dt: float, *, jobs: bool = True) -> None:
        if not jobs:
            steps.append(dt)
        step(fleet, now, dt, jobs=jobs)

    monkeypatch.setattr(Fleet, "_step", counted)
    return steps


def test_serves_simulated_inventory_is_the_warmed_fleets_without_warming_every_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``alerting.sim_inventory`` of 2,048 nodes took 15 s to warm up GPU readings it never reads."""
    from gpuwarden.cli.inventories import prepare_inventories  # noqa: PLC0415 - as serve imports it

    config = tmp_path / "gpuwarden.yaml"
    config.write_text("alerting:\n  sim_inventory: true\nexporter:\n  simulate: 6x4\nsim:\n  seed: 3\n")
    warmed = inventory_from_fleet(build_fleet(6, 4, seed=3, clock=FakeClock()))
    steps = _count_warm_up_steps(monkeypatch)
    inventories = prepare_inventories(load_config(config))
    try:
        (static, _), *_ = inventories.fixed
        assert static.node_list == warmed.node_list
        assert static.workload_list == warmed.workload_list
        assert static.spare == warmed.spare
    finally:
        inventories.close()
    assert steps == []


@pytest.mark.parametrize(
    ("argv", "warned"),
    [
        pytest.param(["inject", "xid", "--node", "node-01", "--gpu", "0", "--xid", "79"], True, id="inject"),
        pytest.param(["clear", "f-0001"], False, id="clear"),
        pytest.param(["faults"], False, id="faults"),
    ],
)
def test_an_exporter_that_takes_the_request_but_does_not_answer_is_a_timeout_not_unreachable(
    argv: list[str], warned: bool
) -> None:
    """An exporter slow to answer (a big fleet on a loaded machine) was said as "cannot reach ...: timed out;
    is the exporter running with --simulate?", though it had the request: an injected fault the operator
    then posted again ran twice. It says it waited, and of a POST that the fault may be injected already."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", free_port()))
        listening.listen(8)  # the kernel accepts connections; nobody reads or answers
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        result = runner.invoke(app, ["sim", *argv, "--url", url, "--timeout", "0.2"])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1, result.output
    assert said.startswith(f"error: timed out after 0.2 s waiting for an answer from {url}/sim/faults"), said
    assert "cannot reach" not in said and "is the exporter running" not in said, said
    told = f"may still have injected the fault: look with `gpuwarden sim faults --url {url}` before injecting"
    assert (told in said) is warned, said


def test_an_inject_interrupted_before_the_exporter_answered_says_it_may_be_injected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C while the exporter held the POST ended in silence, exit 130: injected or not, nobody said."""
    import httpx  # noqa: PLC0415 - as the command imports it

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(httpx, "request", interrupted)
    url = "http://127.0.0.1:9"
    result = runner.invoke(app, ["sim", "inject", "hung", "--node", "node-01", "--gpu", "0", "--url", url])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 130, result.output
    assert said.startswith("error: interrupted before the exporter answered; the exporter may still"), said
    assert f"look with `gpuwarden sim faults --url {url}` before injecting it again" in said, said


def test_https_to_a_plain_http_exporter_says_to_start_the_exporter_with_tls_not_serve() -> None:
    """``sim faults --url https://...`` to an exporter without TLS said "... or start serve with
    --web.config.file": ``sim`` talks to the exporter, and serve's TLS changes nothing there."""
    server = FixedAnswer(200, b"[]")
    try:
        url = server.url.replace("http://", "https://")
        result = runner.invoke(app, ["sim", "faults", "--url", url])
    finally:
        server.close()
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1, result.output
    assert "speaks plain HTTP: use http://" in said and "start the exporter with --web.config.file" in said, (
        said
    )
    assert "start serve" not in said, said


def test_an_unloadable_ssl_cert_file_names_the_exporters_certificate_not_serves(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    result = runner.invoke(
        app, ["sim", "faults", "--url", "https://127.0.0.1:9"], env={"SSL_CERT_FILE": str(missing)}
    )
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2, result.output
    assert f"SSL_CERT_FILE={missing}: cannot load CA certificates" in said, said
    assert "the CA that signed the exporter's certificate" in said and "serve's" not in said, said


def test_sim_show_with_config_shows_the_fleet_the_exporter_serves_from_that_file(tmp_path: Path) -> None:
    """``exporter --config gw.yaml`` builds its fleet from the file's ``sim`` section (seed, GPU model, MIG
    GPUs) and ``exporter.simulate``; ``sim show`` took none of it, so its UUIDs were another fleet's and
    it showed no MIG instance on a GPU the exporter served as three."""
    path = tmp_path / "gw.yaml"
    path.write_text(
        "sim:\n  seed: 5\n  gpu_model: NVIDIA A100-SXM4-80GB\n  mig_gpus: ['node-01:1']\n"
        "exporter:\n  simulate: 1x2\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["sim", "show", "--config", str(path), "-o", "json"])
    assert result.exit_code == 0, result.output
    served = build_fleet(
        1, 2, seed=5, clock=FakeClock(), gpu_model="NVIDIA A100-SXM4-80GB", mig_gpus=[("node-01", 1)]
    )
    assert json.loads(result.stdout) == served.describe()
    table = runner.invoke(app, ["sim", "show", "--config", str(path)], env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.output
    assert "simulated fleet 1x2 (seed 5)" in table.stdout
    assert f"MIG on node-01/1: {', '.join(served.describe()['nodes'][0]['gpus'][1]['mig'])}" in table.stdout


def test_sim_show_with_config_names_the_setting_at_fault_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("sim:\n  mig_gpus: ['node-01:7']\nexporter:\n  simulate: 1x2\n", encoding="utf-8")
    result = runner.invoke(app, ["sim", "show", "--config", str(path)])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1, result.output
    assert said.startswith(f"error: {path}:2: sim.mig_gpus: 'node-01:7': exporter.simulate 1x2 serves"), said
