"""``gpuwarden exporter``: start-up failures are one clear line, no traceback; exit 1 (2: a bad option)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pytest

from exporters import training_export
from gpuwarden.cli import app
from gpuwarden.cli.exporter_cmd import _build, _say_pushes, _simulated_service
from gpuwarden.cli.sim_checks import check_sim_section
from gpuwarden.clock import FakeClock
from gpuwarden.config import ExporterConfig, GpuwardenConfig, load_config
from gpuwarden.errors import ConfigError
from gpuwarden.sim import build_fleet
from tests.exporters.asgi_client import AsgiClient
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.gpuwarden.cli.stopping import run_then_sigterm
from tests.gpuwarden.startable import startable
from tests.integration.servers import free_port, ipv6_loopback, sigterm_once

runner = BuiltCliRunner()


def run_exporter(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``gpuwarden exporter ARGS`` as a process, not CliRunner: an exporter that accepted what the test
    expects it to refuse would serve until killed; here it fails the test after a minute."""
    return subprocess.run(
        [sys.executable, "-c", "from gpuwarden.cli import main; main()", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("argv", "words", "code"),
    [
        (["exporter", "--port", "19999"], "cannot initialise NVML (LibraryNotFound)", 69),
        (["exporter", "--simulate", "2y8"], "error: --simulate '2y8': expected NODESxGPUS such as 2x8", 2),
        (["exporter", "--simulate", "0x8"], "error: --simulate '0x8': nodes must be 1..2048, got 0", 2),
        (["exporter", "--simulate", "2x8", "--port", "0"], "error: --port 0: use a whole number from 1", 2),
        (
            ["exporter", "--simulate", "2x8", "--interval", "0"],
            "error: --interval 0: use a number from 0.1 to 604800",
            2,
        ),
    ],
    ids=["no-driver", "bad-simulate-spec", "bad-simulate-size", "bad-port", "bad-interval"],
)
def test_startup_errors_print_one_line_and_a_bad_option_exits_2_as_click_does(
    argv: list[str], words: str, code: int
) -> None:
    result = runner.invoke(app, argv)
    said = " ".join(result.output.split())
    assert result.exit_code == code
    assert words in said and said.count(f"'{argv[-1]}'") <= 1, (
        said
    )  # a text value said once, after the option
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_bad_exporter_setting_in_the_file_exits_78_not_as_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "gpuwarden.yaml"
    config.write_text("exporter:\n  simulate: 2y8\n")
    result = runner.invoke(app, ["exporter", "--config", str(config)])
    assert result.exit_code == 78 and "exporter.simulate" in result.output, result.output


def test_a_bad_config_file_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "gpuwarden.yaml"
    config.write_text("exporter:\n  prot: 9400\n")
    result = runner.invoke(app, ["exporter", "--config", str(config)])
    assert result.exit_code == 78
    assert "exporter.prot" in result.output


@pytest.mark.parametrize("flag", [True, False], ids=["option", "setting"])
def test_a_port_another_process_listens_on_is_named(tmp_path: Path, flag: bool) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "gpuwarden.yaml"
        config.write_text(f"exporter:\n  listen_address: 127.0.0.1\n  port: {port}\n")
        args = ["--port", str(port), "--listen-address", "127.0.0.1"] if flag else ["--config", str(config)]
        result = runner.invoke(app, ["exporter", "--simulate", "1x1", *args])
    named = f"--port {port}" if flag else f"{config}:3: exporter.port"
    assert result.exit_code == 75 and f"{named}: cannot listen on 127.0.0.1:{port}" in " ".join(
        result.output.split()
    )


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_an_ipv6_listen_address_is_in_brackets_in_the_start_line_and_a_taken_port_s_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # They said http://::1:19310/metrics, no URL a browser or Prometheus takes, and "cannot listen on
    # :::19300".
    import exporters.server  # noqa: PLC0415

    with socket.socket(socket.AF_INET6) as taken:
        taken.bind(("::1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["exporter", "--simulate", "1x1", "--listen-address", "::1", "--port", str(port)]
        refused = runner.invoke(app, args)
    assert refused.exit_code == 75
    assert f"--port {port}: cannot listen on [::1]:{port}: Address already in use" in " ".join(
        refused.output.split()
    )
    monkeypatch.setattr(
        exporters.server, "run_until_stopped", lambda _server, _sockets, _stop: None
    )  # no serving
    with caplog.at_level(logging.INFO):
        started = runner.invoke(app, args)
    assert started.exit_code == 0, started.output
    said = [r.getMessage() for r in caplog.records if "exporter serving" in r.getMessage()]
    assert said == [f"exporter serving simulated fleet 1x1 on http://[::1]:{port}/metrics"]


def test_an_address_that_does_not_resolve_fails_naming_the_option_before_saying_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        result = runner.invoke(
            app,
            ["exporter", "--simulate", "1x1", "--listen-address", "no-such-host.invalid", "--port", "19999"],
        )
    assert result.exit_code == 78 and "--listen-address" in result.output
    assert "Traceback" not in result.output
    assert not [r for r in caplog.records if "serving" in r.getMessage()]


def test_host_names_the_listen_address_as_it_does_for_serve_and_inference_server() -> None:
    # `exporter --host` was refused, "no such option: --host (Possible options: --port)", where serve and
    # inference-server take --host for the same setting.
    result = runner.invoke(
        app, ["exporter", "--simulate", "1x1", "--host", "no-such-host.invalid", "--port", "19999"]
    )
    assert result.exit_code == 78 and "--listen-address 'no-such-host.invalid'" in result.output, (
        result.output
    )
    assert "no such option" not in result.output


def test_an_unusable_pushgateway_url_stops_the_simulated_exporter_naming_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "gpuwarden.yaml"
    config.write_text("tracing:\n  pushgateway_url: not a url\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = run_exporter(["--simulate", "1x4", "--port", str(port), "--config", str(config)])
    assert done.returncode == 78
    said = " ".join(done.stderr.split())
    assert f"{config}:2: tracing.pushgateway_url: not a valid Pushgateway URL" in said, said


def test_sigterm_stops_the_exporter_gracefully_with_exit_0(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-c", "from gpuwarden.cli import main; main()", "exporter", "--simulate", "1x1"]
    argv += ["--port", str(port), "--listen-address", "127.0.0.1"]
    status = run_then_sigterm(argv, f"http://127.0.0.1:{port}/", tmp_path / "exporter.log")
    assert status == 0, (tmp_path / "exporter.log").read_text()


def test_the_simulated_exporter_takes_faults_from_this_machine_only_unless_allowed() -> None:
    """It listens on 0.0.0.0 by default: a remote POST /sim/faults would mark a GPU lost fleet-wide."""
    fault = {"kind": "hw_thermal_slowdown", "node": "node-01", "gpu": 0, "params": {"factor": 0.3}}
    for allowed, status in ((False, 403), (True, 201)):
        fleet = build_fleet(1, 1, seed=1, clock=FakeClock())
        service = _simulated_service(
            fleet, ExporterConfig(simulate="1x1"), FakeClock(), allow_remote_faults=allowed
        )
        remote = AsgiClient(service.app, client=("10.1.2.3", 40000))
        assert remote.post("/sim/faults", json=fault).status_code == status
        assert len(fleet.active_faults()) == (1 if allowed else 0)
        assert remote.get("/sim/faults").status_code == 200
    local = AsgiClient(service.app, client=("127.0.0.1", 40000))
    assert local.post("/sim/faults", json=fault).status_code == 201


def test_failed_training_pushes_show_on_the_simulated_exporters_own_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(gateway: str, **_: object) -> None:
        raise urllib.error.HTTPError(gateway, 400, "Bad Request", {}, None)  # type: ignore[arg-type]

    monkeypatch.setattr(training_export, "push_to_gateway", refuse)
    full = GpuwardenConfig.model_validate({"tracing": {"pushgateway_url": "127.0.0.1:9"}})
    service, publisher = _build(ExporterConfig(simulate="1x4"), full, FakeClock())  # type: ignore[arg-type]
    assert publisher is not None and not publisher.run_once()
    service.loop.run_once()
    text = AsgiClient(service.app).get("/metrics").text
    assert 'gpuwarden_exporter_training_push_failures_total{reason="http_400"}' in text, text


@pytest.mark.parametrize(
    ("section", "argv", "named"),
    [
        ("sim:\n  nodes_per_rack: 3\n  gpus_per_node: 4\n", ["--simulate", "2x8"], ":3: sim.gpus_per_node"),
        ("sim:\n  nodes_per_rack: 3\n", ["--simulate", "2x8"], ":2: sim.nodes_per_rack"),
        (
            "exporter:\n  simulate: 2x8\nsim:\n  clusters: 3\n  nodes_per_rack: 1\n",
            [],
            ":4: sim.clusters",
        ),
    ],
    ids=["gpus-differ", "nodes-differ", "setting-against-two-clusters"],
)
def test_a_simulated_fleet_other_than_the_files_sim_section_is_refused_naming_both(
    tmp_path: Path, section: str, argv: list[str], named: str
) -> None:
    """serve's alerting.sim_inventory takes the sim section: it would not know the exporter's nodes."""
    config = tmp_path / "gpuwarden.yaml"
    config.write_text(section)
    done = run_exporter(
        ["--config", str(config), "--port", str(free_port()), "--listen-address", "127.0.0.1", *argv]
    )
    said = " ".join(done.stderr.split())
    assert done.returncode == 78, said
    assert f"{config}{named}:" in said and "make them agree" in said, said
    flag = "--simulate" if "--simulate" in argv else "exporter.simulate"
    assert f"but {flag} 2x8 serves 2 nodes of 8 GPUs" in said, said


@pytest.mark.parametrize(
    "section",
    [
        "sim:\n  seed: 3\n",
        "sim:\n  nodes_per_rack: 2\n  gpus_per_node: 8\n",
        "sim:\n  racks_per_cluster: 2\n  nodes_per_rack: 1\n",
    ],
    ids=["seed-only", "the-same-fleet", "the-same-count-in-two-racks"],
)
def test_a_sim_section_that_agrees_or_sets_only_the_seed_is_taken(tmp_path: Path, section: str) -> None:
    config = tmp_path / "gpuwarden.yaml"
    config.write_text(section)
    full = load_config(config)
    check_sim_section(full, "2x8", "--simulate")  # no error


def test_the_simulated_exporter_takes_the_sim_sections_gpu_model_as_serve_does() -> None:
    full = GpuwardenConfig.model_validate({"sim": {"gpu_model": "NVIDIA H200"}})
    service, _ = _build(ExporterConfig(simulate="1x2"), full, FakeClock())  # type: ignore[arg-type]
    service.loop.run_once()
    text = AsgiClient(service.app).get("/metrics").text
    assert 'modelName="NVIDIA H200"' in text and "H100" not in text


def test_the_sim_sections_mig_gpus_are_served_split_into_their_instances() -> None:
    """MIG could be simulated only from Python (``build_fleet(mig_gpus=...)``): no setting reached it."""
    full = GpuwardenConfig.model_validate({"sim": {"mig_gpus": ["node-01:1"]}})
    service, _ = _build(ExporterConfig(simulate="1x2"), full, FakeClock())  # type: ignore[arg-type]
    service.loop.run_once()
    text = AsgiClient(service.app).get("/metrics").text
    split = {line.split('gpu="')[1].split('"')[0] for line in text.splitlines() if "GPU_I_ID=" in line}
    assert split == {"1"}, text


def test_a_mig_gpu_the_simulated_fleet_lacks_or_misnamed_is_refused_naming_the_setting(
    tmp_path: Path,
) -> None:
    config = tmp_path / "gpuwarden.yaml"
    config.write_text("sim:\n  mig_gpus: [node-03:1]\n")
    done = run_exporter(
        [
            "--config",
            str(config),
            "--port",
            str(free_port()),
            "--listen-address",
            "127.0.0.1",
            "--simulate",
            "2x8",
        ]
    )
    said = " ".join(done.stderr.split())
    assert done.returncode == 78, said
    assert f"{config}:2: sim.mig_gpus: 'node-03:1': --simulate 2x8 serves node-01 to node-02" in said, said
    config.write_text("sim:\n  mig_gpus: [gpu1]\n")
    with pytest.raises(ConfigError, match="write each GPU as node-NN:INDEX"):
        load_config(config)


def test_serves_simulated_inventory_is_the_fleet_of_the_files_exporter_simulate(tmp_path: Path) -> None:
    """``sim_inventory: true`` beside ``exporter.simulate: 8x8`` gave serve the default fleet of two nodes:
    alerts from node-03 to node-08 named nodes its inventory lacked."""
    from gpuwarden.cli.inventories import prepare_inventories  # noqa: PLC0415 - as serve imports it

    config = tmp_path / "gpuwarden.yaml"
    config.write_text("alerting:\n  sim_inventory: true\nexporter:\n  simulate: 8x4\nsim:\n  seed: 3\n")
    full = load_config(config)
    inventories = prepare_inventories(full)
    try:
        (static, _), *_ = inventories.fixed
        served = build_fleet(8, 4, seed=3, clock=FakeClock())
        assert [node.name for node in static.node_list] == [node.name for node in served.nodes]
        assert [n.gpu_count for n in static.node_list] == [len(n.gpus) for n in served.nodes]
        assert [n.gpu_uuids for n in static.node_list] == [
            tuple(gpu.uuid for gpu in n.gpus) for n in served.nodes
        ]
    finally:
        inventories.close()


def test_an_exporter_simulating_another_fleet_than_serves_default_inventory_is_refused(
    tmp_path: Path,
) -> None:
    """With ``sim_inventory: true`` and no size in the file, ``--simulate 8x8`` started with the same file
    served nodes serve did not know (it assumed two)."""
    config = tmp_path / "gpuwarden.yaml"
    config.write_text("alerting:\n  sim_inventory: true\n")
    full = load_config(config)
    with pytest.raises(ConfigError) as refused:
        check_sim_section(full, "8x8", "--simulate")
    said = str(full.locate(refused.value))
    assert f"{config}:2: alerting.sim_inventory:" in said and "write exporter.simulate: 8x8" in said, said
    check_sim_section(full, "2x8", "--simulate")  # the fleet serve assumes: taken


def test_config_validate_warns_of_a_simulated_inventory_whose_size_nothing_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gpuwarden.yaml"
    config.write_text(startable(monkeypatch, "alerting:\n  sim_inventory: true\n"))
    warned = runner.invoke(app, ["config", "validate", str(config)])
    assert warned.exit_code == 0, warned.stderr
    said = " ".join(warned.stderr.split())
    assert f"warning: {config}:2: alerting.sim_inventory: serve takes the default simulated fleet" in said
    config.write_text(
        startable(monkeypatch, "alerting:\n  sim_inventory: true\nexporter:\n  simulate: 8x8\n")
    )
    told = runner.invoke(app, ["config", "validate", str(config)])
    assert told.exit_code == 0 and "sim_inventory" not in told.stderr, told.stderr


def test_a_pushgateway_set_for_an_exporter_on_nvml_is_warned_of(caplog: pytest.LogCaptureFixture) -> None:
    # Nothing is pushed there from an NVML exporter: a setting that does nothing was an info line.
    tracing = GpuwardenConfig.model_validate({"tracing": {"pushgateway_url": "127.0.0.1:9"}}).tracing
    with caplog.at_level(logging.INFO, logger="gpuwarden.cli.exporter_cmd"):
        _say_pushes(None, tracing)
    [record] = caplog.records
    assert record.levelno == logging.WARNING, record
    assert "tracing.pushgateway_url is set, but this exporter pushes nothing to it" in record.getMessage()


def test_the_simulated_exporters_push_line_hides_the_gateways_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The start line named the Pushgateway URL whole, a basic-auth password in it too."""
    full = GpuwardenConfig.model_validate({"tracing": {"pushgateway_url": "http://pusher:S3cret@pg:9091"}})
    _, publisher = _build(ExporterConfig(simulate="1x4"), full, FakeClock())  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="gpuwarden.cli.exporter_cmd"):
        _say_pushes(publisher, full.tracing)
    [record] = caplog.records
    assert "push to http://pusher:***@pg:9091 every" in record.getMessage(), record.getMessage()


def test_help_says_the_exporter_listens_on_every_interface_by_default() -> None:
    """--help gave --port's and --interval's defaults but not --listen-address's: 0.0.0.0 (as dcgm-exporter),
    where serve, anomaly run and inference-server listen on 127.0.0.1 unless told."""
    result = runner.invoke(app, ["exporter", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    line = next(line for line in result.stdout.splitlines() if "--listen-address" in line)
    assert "default 0.0.0.0" in line, line


@pytest.mark.parametrize(
    "shown",
    [
        "--port <int> [1<=x<=65535]",
        "--interval <float> [0.1<=x<=604800]",
        "at least 0.1: NVML's counters refresh no faster",  # the floor and why: a shorter one spins a core
    ],
)
def test_help_shows_the_bounds_of_each_number(shown: str) -> None:
    """README: ``--help`` shows each bound; the exporter's showed a bare ``<int>`` and ``<float>``."""
    result = runner.invoke(app, ["exporter", "--help"], env={"COLUMNS": "200"})
    assert shown in " ".join(result.output.replace("│", " ").split()), result.output


@pytest.mark.parametrize(
    ("command", "started"),
    [
        pytest.param(
            ["exporter", "--simulate", "1x1", "--listen-address", "127.0.0.1"],
            "exporter serving",
            id="exporter",
        ),
        pytest.param(
            ["inference-server", "--host", "127.0.0.1"], "inference server on", id="inference-server"
        ),
    ],
)
def test_sigterm_as_soon_as_the_start_up_line_is_said_stops_with_exit_0(
    tmp_path: Path, command: list[str], started: str
) -> None:
    # The stop signals were caught only once uvicorn ran, and uvicorn was imported after the start-up line:
    # a SIGTERM sent on reading that line (a pod stopped as it came up) killed the process, exit 143, its
    # collection or buffered spans never stopped.
    log = tmp_path / "log"
    argv = [
        sys.executable,
        "-c",
        "from gpuwarden.cli import main; main()",
        *command,
        "--port",
        str(free_port()),
    ]

    def said_started(proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 120
        while started not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.01)

    code = sigterm_once(argv, log, said_started)
    assert code == 0, log.read_text()
