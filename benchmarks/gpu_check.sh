#!/usr/bin/env bash
# gpu_check.sh: check the exporter on a machine with a real NVIDIA H100 (issue 2, "Proof").
#
#   1. uses the project's venv (.venv, or $GPUWARDEN_VENV; made with `make venv` if missing and PyPI is reachable)
#   2. runs `gpuwarden exporter` on real NVML and checks that every family an H100 supports is served
#   3. times one full NvmlCollector collection against `nvidia-smi --query-gpu=<same fields> --format=csv`
#      in the same run (target: the collection is >= 10x cheaper in CPU time)
#   4. prints ONE JSON line; exit 0 when every required family is present and the target is met
#
# Usage: benchmarks/gpu_check.sh [--dry-run] [--simulate] [--runs N]
#   --dry-run   check the tools and print the plan; touches no GPU (bash -n also passes on this file)
#   --simulate  self-test on the simulated fleet (no GPU, no nvidia-smi): proves the script's own logic
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GPUWARDEN_VENV:-$REPO/.venv}"
RUNS=20
DRY_RUN=0
SIMULATE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --simulate) SIMULATE=1 ;;
    --runs) RUNS="$2"; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

fail_json() {  # one JSON line saying why, then exit 1
  printf '{"check": "gpu_check", "ok": false, "error": "%s"}\n' "$(echo "$1" | sed 's/"/\\"/g')"
  exit 1
}

PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
  if [ "$DRY_RUN" = 1 ]; then
    PY=""
  else
    echo "no venv at $VENV; creating it with make venv" >&2
    make -C "$REPO" venv >&2 || fail_json "no venv at $VENV and make venv failed (is PyPI reachable?)"
  fi
fi

HAVE_SMI=0
command -v nvidia-smi >/dev/null 2>&1 && HAVE_SMI=1

if [ "$DRY_RUN" = 1 ]; then
  printf '{"check": "gpu_check", "dry_run": true, "repo": "%s", "venv_python": "%s", "nvidia_smi": %s, "runs": %s, "plan": ["exporter on real NVML serves every H100 family", "time one collection vs nvidia-smi --query-gpu"]}\n' \
    "$REPO" "${PY:-missing}" "$([ $HAVE_SMI = 1 ] && echo true || echo false)" "$RUNS"
  exit 0
fi

if [ "$SIMULATE" = 0 ]; then
  [ "$HAVE_SMI" = 1 ] || fail_json "nvidia-smi not found: this check needs a machine with an NVIDIA driver"
  # Hopper: H100, H200 and GH200 support the same families (GPM profiling included).
  nvidia-smi --query-gpu=name --format=csv,noheader | grep -Eq "H100|H200|GH200" \
    || fail_json "no Hopper GPU (H100/H200/GH200) found by nvidia-smi: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
  HELP_QUERY="$(nvidia-smi --help-query-gpu)"
else
  HELP_QUERY=""
fi

# 1. the exporter as a real process, scraped over HTTP
PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
LOG="$(mktemp -t gpuwarden-exporter.XXXXXX.log)"
EXPORTER_ARGS=(exporter --listen-address 127.0.0.1 --port "$PORT" --interval 1)
[ "$SIMULATE" = 1 ] && EXPORTER_ARGS+=(--simulate 1x8)
"$VENV/bin/gpuwarden" "${EXPORTER_ARGS[@]}" >"$LOG" 2>&1 &
EXPORTER_PID=$!
trap 'kill "$EXPORTER_PID" 2>/dev/null || true; wait "$EXPORTER_PID" 2>/dev/null || true; rm -f "$LOG"' EXIT

export GPU_CHECK_PORT="$PORT" GPU_CHECK_RUNS="$RUNS" GPU_CHECK_SIMULATE="$SIMULATE" GPU_CHECK_LOG="$LOG"
export GPU_CHECK_HELP_QUERY="$HELP_QUERY"
cd "$REPO"
"$PY" - <<'PY'
import json
import logging
import os
import resource
import statistics
import subprocess
import time

import httpx

from exporters import fields as fams
from exporters.nvml_collector import NvmlCollector, init_nvml
from exporters.xid import XidLedger, XidWatcher
from gpuwarden.clock import SystemClock

logging.disable(logging.WARNING)
port = int(os.environ["GPU_CHECK_PORT"])
runs = int(os.environ["GPU_CHECK_RUNS"])
simulate = os.environ["GPU_CHECK_SIMULATE"] == "1"
out: dict[str, object] = {"check": "gpu_check", "simulated": simulate}

# Families an H100 SXM supports. NVLink ones are optional (a PCIe H100 may have no NVLink); process
# memory needs a running process; the recovery action field needs a recent driver.
REQUIRED = [
    "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_MEMORY_TEMP", "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "DCGM_FI_DEV_XID_ERRORS",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_SM_ACTIVE", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
    "DCGM_FI_PROF_DRAM_ACTIVE", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_ROW_REMAP_PENDING", "DCGM_FI_DEV_ROW_REMAP_FAILURE", "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
    "DCGM_FI_DEV_POWER_VIOLATION", "gpuwarden_gpu_up", "gpuwarden_exporter_stale",
    "gpuwarden_collection_last_success_timestamp_seconds",
]
OPTIONAL = [
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", "DCGM_FI_DEV_THERMAL_VIOLATION",
    "DCGM_FI_PROF_SM_OCCUPANCY", "DCGM_FI_DEV_ENC_UTIL", "DCGM_FI_DEV_DEC_UTIL", "DCGM_FI_DEV_FB_TOTAL",
    "gpuwarden_gpu_recovery_action", "gpuwarden_process_memory_used_bytes",
]  # fmt: skip


def scrape_names() -> set[str]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name = line.split()[2]
            names.add(name.removesuffix("_total") if name.removesuffix("_total") in fams.BY_NAME else name)
    return names


# wait for the exporter (bounded), then give GPM two collections
names: set[str] = set()
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
            time.sleep(2.5)
            names = scrape_names()
            break
    except httpx.HTTPError:
        pass
    time.sleep(0.2)
if not names:
    log = open(os.environ["GPU_CHECK_LOG"], encoding="utf-8", errors="replace").read()[-800:]
    out.update(ok=False, error="exporter did not answer /healthz within 30 s", exporter_log=log)
    print(json.dumps(out))
    raise SystemExit(1)
missing = [n for n in REQUIRED if n not in names]
out["families_served"] = len(names)
out["missing_required"] = missing
out["missing_optional"] = [n for n in OPTIONAL if n not in names]

# 2. one full collection in this process, on the same NVML
if simulate:
    from gpuwarden.clock import FakeClock
    from gpuwarden.sim import SimNvml, build_fleet

    clock = FakeClock()
    fleet = build_fleet(1, 8, seed=1, clock=clock)
    nvml = SimNvml(fleet, fleet.nodes[0].name)
else:
    import pynvml as nvml

    clock = SystemClock()
init_nvml(nvml)
ledger = XidLedger()
XidWatcher(nvml, ledger, clock).register()
collector = NvmlCollector(nvml, hostname="gpu-check", xids=ledger)
collector.collect()  # discovery and the first GPM sample
gpus = nvml.nvmlDeviceGetCount()
cpu, wall = [], []
for _ in range(runs):
    c0, w0 = time.thread_time(), time.perf_counter()
    families = collector.collect()
    cpu.append(time.thread_time() - c0)
    wall.append(time.perf_counter() - w0)
errors = [
    (s.labels["function"], s.labels["error"], s.value)
    for m in families
    for s in m.samples
    if s.name == "gpuwarden_nvml_call_errors_total"
]
out.update(
    gpus=gpus,
    collect_cpu_ms=round(statistics.median(cpu) * 1000, 3),
    collect_wall_ms=round(statistics.median(wall) * 1000, 3),
    nvml_call_errors=errors,
)

# 3. nvidia-smi for the same fields (only the names this nvidia-smi knows)
CANDIDATES = [
    "utilization.gpu", "utilization.memory", "memory.used", "memory.free", "memory.total", "temperature.gpu",
    "temperature.memory", "power.draw", "clocks.sm", "clocks.mem", "ecc.errors.corrected.volatile.total",
    "ecc.errors.uncorrected.volatile.total", "ecc.errors.corrected.aggregate.total",
    "ecc.errors.uncorrected.aggregate.total", "clocks_event_reasons.active", "clocks_throttle_reasons.active",
    "retired_pages.pending", "pci.bus_id", "uuid", "name", "index",
]  # fmt: skip
help_text = os.environ.get("GPU_CHECK_HELP_QUERY", "")
query = [f for f in CANDIDATES if f'"{f}"' in help_text]
if "clocks_event_reasons.active" in query and "clocks_throttle_reasons.active" in query:
    query.remove("clocks_throttle_reasons.active")
if simulate or not query:
    out.update(nvidia_smi_fields=0, note="simulated: nvidia-smi not timed")
    ok = not missing
else:
    smi_cpu, smi_wall = [], []
    argv = ["nvidia-smi", f"--query-gpu={','.join(query)}", "--format=csv"]
    for _ in range(max(3, runs // 2)):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        w0 = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, check=False, timeout=60)
        smi_wall.append(time.perf_counter() - w0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        smi_cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        if done.returncode != 0:
            out.update(ok=False, error=f"nvidia-smi failed: {done.stderr.decode()[-300:]}")
            print(json.dumps(out))
            raise SystemExit(1)
    smi_cpu_ms = statistics.median(smi_cpu) * 1000
    smi_wall_ms = statistics.median(smi_wall) * 1000
    cpu_ratio = smi_cpu_ms / max(out["collect_cpu_ms"], 1e-6)  # type: ignore[arg-type]
    wall_ratio = smi_wall_ms / max(out["collect_wall_ms"], 1e-6)  # type: ignore[arg-type]
    out.update(
        nvidia_smi_fields=len(query),
        nvidia_smi_cpu_ms=round(smi_cpu_ms, 3),
        nvidia_smi_wall_ms=round(smi_wall_ms, 3),
        cpu_ratio=round(cpu_ratio, 1),
        wall_ratio=round(wall_ratio, 1),
        target_ratio=10,
    )
    ok = not missing and cpu_ratio >= 10
out["ok"] = ok
print(json.dumps(out))
raise SystemExit(0 if ok else 1)
PY
