"""benchmarks/gpu_check.sh is only run for real where a Hopper GPU is lent; its own logic is proven here.

``--simulate`` runs the same script end to end (exporter process scraped over HTTP, family check, timed
collection) on the simulated fleet, so a broken script is found before a GPU machine's short time is spent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"


def run(*args: str) -> tuple[int, dict[str, object]]:
    env = {**os.environ, "GPUWARDEN_VENV": str(Path(sys.executable).parent.parent)}
    proc = subprocess.run(
        ["bash", str(SCRIPT), *args], check=False, capture_output=True, text=True, env=env, timeout=120
    )
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_script_is_valid_bash_and_its_dry_run_touches_no_gpu() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0
    rc, out = run("--dry-run")
    assert rc == 0 and out["dry_run"] is True


@pytest.mark.integration
def test_on_the_simulated_fleet_every_required_family_is_served_and_a_collection_is_timed() -> None:
    rc, out = run("--simulate", "--runs", "2")
    assert rc == 0, out
    assert out["ok"] is True and out["missing_required"] == [] and out["gpus"] == 8
    assert isinstance(out["collect_cpu_ms"], float) and out["collect_cpu_ms"] > 0
    assert out["healthz"] == {"status_code": 200, "status": "ok"}
    assert out["xid_watcher"] == {"gpus_up": 8, "registered": 8, "ok": True}
    # Every comparison is reported with both values; on the simulator they agree.
    checks = out["value_checks"]
    assert isinstance(checks, list) and out["values_ok"] is True
    families = {c["family"] for c in checks}
    assert {"DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_FB_RESERVED", "DCGM_FI_DEV_POWER_USAGE"} <= families
    assert {"DCGM_FI_DEV_THERMAL_VIOLATION", "DCGM_FI_DEV_LOW_UTIL_VIOLATION"} <= families
    assert all(c["ok"] and c["exporter"] is not None and "expected" in c for c in checks)
    throttled = [c for c in checks if c["family"] == "DCGM_FI_DEV_THERMAL_VIOLATION" and c["gpu"] == "2"]
    assert throttled and throttled[0]["exporter"] >= 1e9  # the throttled GPU, in ns


def test_without_nvidia_smi_a_real_run_fails_with_one_json_line_saying_why(tmp_path: Path) -> None:
    if any(Path(d, "nvidia-smi").exists() for d in ("/usr/bin", "/bin")):
        pytest.skip("this machine has nvidia-smi: the real check applies")
    env_path = f"{tmp_path}:/usr/bin:/bin"  # no nvidia-smi on this PATH
    proc = subprocess.run(
        ["bash", str(SCRIPT)],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": env_path, "GPUWARDEN_VENV": str(Path(sys.executable).parent.parent)},
        timeout=60,
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 1 and out["ok"] is False and "nvidia-smi" in str(out["error"])
