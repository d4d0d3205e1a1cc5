"""Slurm's client commands (``scontrol``, ``sinfo``, ``squeue``) as the Slurm inventory runs them: stdout, or
a ``SourceError`` that says what to do; a command that does not answer in time is killed with every process
it started."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

from gpuwarden.errors import SourceError


def run_command(argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 30.0) -> str:
    """Run a Slurm command; its stdout, or ``SourceError`` with its stderr.

    A ``SLURM_CONF`` naming no file is refused at once: Slurm's commands retry reading it for 60 s first.
    The command runs in a process group of its own, and one that does not answer within ``timeout`` is
    killed with every process it started (a hung ``squeue`` that forked), not itself alone."""
    conf = (env if env is not None else os.environ).get("SLURM_CONF")
    if conf and not os.path.isfile(conf):
        raise SourceError(
            f"SLURM_CONF names {conf}, which is not a file; set it to slurm.conf", source="slurm"
        )
    try:
        returncode, stdout, stderr = _run_group(argv, env, timeout)
    except subprocess.TimeoutExpired as exc:
        said = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        last = said.strip().splitlines()[-1:] or ["nothing"]
        raise SourceError(
            f"{' '.join(argv)} did not answer within {timeout:g} s; it said: {last[0]}", source="slurm"
        ) from exc
    except FileNotFoundError as exc:
        if "/" in argv[0]:
            raise SourceError(f"{argv[0]}: {exc}", source="slurm") from exc
        path = (env if env is not None else os.environ).get("PATH", "")
        raise SourceError(
            f"{argv[0]} is not on PATH ({path}): alerting.slurm_inventory runs Slurm's client commands"
            " (scontrol, sinfo, squeue); install them (Debian: slurm-client) or put their directory on"
            " serve's PATH",
            source="slurm",
        ) from exc
    except OSError as exc:
        raise SourceError(f"{argv[0]}: {exc}", source="slurm") from exc
    if returncode != 0:
        reason = (stderr.strip().splitlines() or ["no output"])[-1]
        raise SourceError(f"{' '.join(argv)} exited {returncode}: {reason}", source="slurm")
    return stdout


def _run_group(argv: Sequence[str], env: Mapping[str, str] | None, timeout: float) -> tuple[int, str, str]:
    """``argv``'s exit status, stdout and stderr; ``TimeoutExpired`` (with the stderr said so far) once its
    process group was killed and the command reaped. ``subprocess.run``'s timeout kills the command alone:
    what it forked (a ``squeue`` or ``scontrol`` hung in a child) lived on, one more at every refresh."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, which a timeout kills whole
    )
    _running.add(proc.pid)
    with proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except BaseException:  # the timeout, or serve stopping: no process of the command is left behind
            _kill_group(proc.pid)  # before the wait reaps it: its group's id is not anyone else's until then
            proc.wait()
            raise
        finally:
            _running.discard(proc.pid)
    return proc.returncode, stdout, stderr


_running: set[int] = set()  # process groups of the Slurm commands running now


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group ended meanwhile
        os.killpg(pid, signal.SIGKILL)


@atexit.register
def _kill_running() -> None:
    """Kill the Slurm commands still running when serve exits (stopped during a refresh): in a session of
    their own, a terminal's Ctrl-C or hang-up no longer reaches them."""
    for pid in list(_running):
        _kill_group(pid)
