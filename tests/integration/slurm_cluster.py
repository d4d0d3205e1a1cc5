"""A real two-node Slurm cluster on 127.0.0.1 for integration tests (Debian's slurm-wlm and munge).

munged, slurmctld and two slurmd (``-N node-01``, ``-N node-02`` on one host) run in a temp directory
with their own ports and key socket; each node has four GPUs (GRES over placeholder device files) and hangs
off its own leaf switch (``topology/tree``: racks r01 and r02) of cluster ``c1``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.servers import free_port, require_binary, stop

NODES = ("node-01", "node-02")
GPUS_PER_NODE = 4


@dataclass(frozen=True)
class SlurmCluster:
    """Where the cluster's configuration is and how to run its commands."""

    conf: Path

    @property
    def env(self) -> dict[str, str]:
        """The environment Slurm's commands need to find this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str) -> str:
        """Run a Slurm command against this cluster; its stdout."""
        return subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, check=True, timeout=30
        ).stdout

    def submit(self, name: str, nodes: int, gpus_per_node: int, *options: str) -> str:
        """Submit ``sleep`` as a job holding GPUs (more ``sbatch`` options: ``-w node-01``); its job id once
        it runs."""
        out = self.run(
            "sbatch", "--parsable", "-J", name, "-N", str(nodes), f"--gres=gpu:{gpus_per_node}", *options,
            f"--chdir={self.conf.parent}", "--output=/dev/null", "--wrap", "sleep 600",
        )  # fmt: skip
        job_id = out.strip().split(";")[0]
        deadline = time.monotonic() + 60
        while self.run("squeue", "-h", "-j", job_id, "-o", "%T").strip() != "RUNNING":
            if time.monotonic() > deadline:
                pytest.fail(f"job {job_id} did not start: {self.run('squeue', '-j', job_id)}")
            time.sleep(0.2)
        return job_id

    def wait_job_not_running(self, job_id: str) -> None:
        """Wait until the job left RUNNING (ended, failed or requeued) and COMPLETING: a job ending, a node
        failure's requeue too, is COMPLETING a moment on the nodes it held, and a read then still finds it
        running there (a test that read at once saw no spare GPU, or the job kept only at the read after)."""
        deadline = time.monotonic() + 60
        while self.run("squeue", "-h", "-j", job_id, "-o", "%T").strip() in ("RUNNING", "COMPLETING"):
            if time.monotonic() > deadline:
                pytest.fail(f"job {job_id} still running: {self.run('squeue', '-j', job_id)}")
            time.sleep(0.2)


def _config(base: Path, host: str, ports: list[int], min_job_age: int | None = None) -> str:
    nodes = "\n".join(
        f"NodeName={n} NodeHostname={host} NodeAddr=127.0.0.1 Port={p} CPUs=2 RealMemory=1000 "
        f"Gres=gpu:{GPUS_PER_NODE} State=UNKNOWN"
        for n, p in zip(NODES, ports[2:], strict=True)
    )
    return f"""ClusterName=c1
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
AuthType=auth/munge
AuthInfo=socket={base}/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool/%n
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd-%n.pid
SlurmctldLogFile={base}/slurmctld.log
SlurmdLogFile={base}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
TopologyPlugin=topology/tree
ReturnToService=1
KillWait=1
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
{f"MinJobAge={min_job_age}" if min_job_age is not None else ""}
{nodes}
PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


@contextmanager
def slurm_cluster(min_job_age: int | None = None) -> Iterator[SlurmCluster]:
    """Start the cluster; stop every daemon afterwards. ``min_job_age``: Slurm's ``MinJobAge`` (300 s by
    default), how long an ended job stays in ``squeue`` (slurmctld purges such jobs about once a minute)."""
    for name in ("munged", "slurmctld", "slurmd"):
        require_binary(name)
    base = Path(tempfile.mkdtemp(prefix="gpuwarden-slurm-"))
    base.chmod(0o755)  # munged runs as its own user and must reach its socket directory
    host = socket.gethostname()
    (base / "munge").mkdir()
    shutil.chown(base / "munge", "munge", "munge")
    for sub in ("state", *(f"spool/{n}" for n in NODES), "dev"):
        (base / sub).mkdir(parents=True)
    for i in range(GPUS_PER_NODE):
        (base / "dev" / f"nvidia{i}").touch()
    conf = base / "slurm.conf"
    conf.write_text(_config(base, host, [free_port() for _ in range(2 + len(NODES))], min_job_age))
    (base / "gres.conf").write_text(
        f"NodeName={','.join(NODES)} Name=gpu File={base}/dev/nvidia[0-{GPUS_PER_NODE - 1}]\n"
    )
    (base / "topology.conf").write_text(
        "SwitchName=r01 Nodes=node-01\nSwitchName=r02 Nodes=node-02\nSwitchName=c1 Switches=r[01-02]\n"
    )
    cluster = SlurmCluster(conf)
    with ExitStack() as stack:
        stack.callback(_kill_leftovers, conf)  # runs last, after the daemons stopped
        munge = [
            "runuser", "-u", "munge", "--", "munged", "-F", f"--socket={base}/munge/munge.socket",
            f"--pid-file={base}/munge/munged.pid", f"--log-file={base}/munge/munged.log",
            f"--seed-file={base}/munge/seed",
        ]  # fmt: skip
        daemons = [munge, ["slurmctld", "-D", "-i", "-f", str(conf)]]
        daemons += [["slurmd", "-D", "-N", node, "-f", str(conf)] for node in NODES]
        for i, argv in enumerate(daemons):
            log = stack.enter_context((base / f"daemon-{i}.out").open("wb"))
            proc = subprocess.Popen(argv, env=cluster.env, stdout=log, stderr=subprocess.STDOUT)
            stack.callback(stop, proc)
            if i == 0:
                _wait_for((base / "munge" / "munge.socket").exists, "munged", base)
            if i == 1:
                _wait_for(lambda: _answers(cluster), "slurmctld", base)
        _wait_for(lambda: _idle_nodes(cluster) == len(NODES), "both slurmd idle", base)
        stack.callback(_end_jobs, cluster, base)  # runs first: jobs' slurmstepd outlive slurmd
        yield cluster
    shutil.rmtree(base, ignore_errors=True)


def _answers(cluster: SlurmCluster) -> bool:
    try:
        cluster.run("scontrol", "ping")
    except subprocess.CalledProcessError:
        return False
    return True


def _idle_nodes(cluster: SlurmCluster) -> int:
    return len([s for s in cluster.run("sinfo", "-h", "-N", "-o", "%t").split() if s == "idle"])


def _wait_for(check: Callable[[], bool], what: str, base: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            logs = "\n".join(
                f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in base.glob("*.log")
            )
            pytest.fail(f"Slurm test cluster: {what} not ready in {timeout} s\n{logs}")
        time.sleep(0.2)


def _end_jobs(cluster: SlurmCluster, base: Path) -> None:
    subprocess.run(["scancel", "--full", "--user=root"], env=cluster.env, capture_output=True, check=False)
    deadline = time.monotonic() + 20
    while cluster.run("squeue", "-h", "-t", "running,completing").strip() and time.monotonic() < deadline:
        time.sleep(0.2)
    subprocess.run(["pkill", "-f", f"{base}/spool"], capture_output=True, check=False)


def _kill_leftovers(conf: Path) -> None:
    """SIGKILL whatever still runs with this cluster's SLURM_CONF: a job's slurmstepd and script outlive
    slurmd when it stops before they finish."""
    marker = f"SLURM_CONF={conf}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue
