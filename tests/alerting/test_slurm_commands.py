"""Slurm's commands as the inventory runs them: a slurm.conf that is not there, a command not on PATH, one
that does not answer in time (killed with what it started)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from alerting.slurm_commands import run_command
from gpuwarden.errors import SourceError


def test_a_slurm_conf_that_names_no_file_is_said_at_once(tmp_path: Path) -> None:
    # scontrol itself retries a missing slurm.conf for 60 s, and serve's read timed out saying only that.
    env = {"SLURM_CONF": str(tmp_path / "nope.conf"), "PATH": "/usr/bin:/bin"}
    with pytest.raises(SourceError, match=r"SLURM_CONF names .*nope\.conf, which is not a file"):
        run_command(["scontrol", "show", "config"], env=env)


def test_a_slurm_command_not_on_path_names_the_setting_and_the_fix(tmp_path: Path) -> None:
    # It said "scontrol: [Errno 2] No such file or directory: 'scontrol'" at every refresh.
    with pytest.raises(SourceError) as said:
        run_command(["scontrol", "show", "config"], env={"PATH": str(tmp_path)})
    message = str(said.value)
    assert f"scontrol is not on PATH ({tmp_path})" in message
    assert "alerting.slurm_inventory" in message and "slurm-client" in message


def test_a_command_that_times_out_says_what_it_last_said(tmp_path: Path) -> None:
    script = tmp_path / "scontrol"
    script.write_text("#!/bin/sh\necho 'cannot reach slurmctld, retrying' >&2\nexec sleep 60\n")
    script.chmod(0o755)
    # 2 s, not less: the shell must start and print first, which a loaded CI machine can delay past 0.5 s.
    with pytest.raises(SourceError, match=r"did not answer within 2 s; it said: cannot reach slurmctld"):
        run_command([str(script), "show", "config"], env={"PATH": "/usr/bin:/bin"}, timeout=2)


def _running(pid: int) -> bool:
    """Whether the process runs (a zombie, killed and not yet reaped by init, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_command_that_times_out_is_killed_with_the_processes_it_started(tmp_path: Path) -> None:
    # A squeue that hangs in a child it forked: the timeout killed squeue alone, and the child lived on,
    # one more at every refresh while slurmctld did not answer.
    script, pid_file = tmp_path / "squeue", tmp_path / "child.pid"
    script.write_text(f"#!/bin/sh\nsleep 120 &\necho $! > {pid_file}\nexec sleep 120\n")
    script.chmod(0o755)
    try:
        with pytest.raises(SourceError, match="did not answer within 2 s"):
            run_command([str(script), "--json"], env={"PATH": "/usr/bin:/bin"}, timeout=2)
        child = int(pid_file.read_text())
        for _ in range(100):  # SIGKILL is sent before run_command returns; the child may take a moment
            if not _running(child):
                break
            time.sleep(0.1)
        assert not _running(child)
    finally:
        if pid_file.exists() and _running(child := int(pid_file.read_text())):
            os.kill(child, signal.SIGKILL)


@pytest.mark.parametrize(
    "started",
    [
        "setsid sleep 120 &\necho $! > {pid}\n",
        "timeout 120 sleep 120 &\necho $! > {pid}\n",
        "(setsid sleep 120 & echo $! > {pid})\n",
    ],
    ids=["own-session", "own-process-group", "own-session-parent-gone"],
)
def test_a_command_that_times_out_is_killed_with_what_it_started_outside_its_process_group(
    tmp_path: Path, started: str
) -> None:
    # A site's wrapper around squeue (`timeout 60 squeue "$@"`; `sudo` with use_pty; setsid): what left the
    # command's process group outlived the timeout's kill, one more at every refresh while slurmctld hung.
    script, pid_file = tmp_path / "squeue", tmp_path / "child.pid"
    script.write_text("#!/bin/sh\n" + started.format(pid=pid_file) + "exec sleep 120\n")
    script.chmod(0o755)
    try:
        with pytest.raises(SourceError, match="did not answer within 2 s"):
            run_command([str(script), "--json"], env={"PATH": "/usr/bin:/bin"}, timeout=2)
        child = int(pid_file.read_text())
        for _ in range(100):  # SIGKILL is sent before run_command returns; the child may take a moment
            if not _running(child):
                break
            time.sleep(0.1)
        assert not _running(child)
    finally:
        if pid_file.exists() and _running(child := int(pid_file.read_text())):
            os.killpg(child, signal.SIGKILL)  # each leads a group of its own: `timeout`'s sleep with it
