"""Slurm's client commands (``scontrol``, ``sinfo``, ``squeue``) as the Slurm inventory runs them: stdout, or
a ``SourceError`` that says what to do; a command that does not answer in time is killed with every process
it started: its process group, and on Linux the processes that left it (a site wrapper's ``timeout`` or
``setsid``, ``sudo`` with ``use_pty``), found by their parents and by a mark in their environment."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Mapping, Sequence

from gpuwarden.errors import SourceError


def run_command(argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 30.0) -> str:
    """Run a Slurm command; its stdout, or ``SourceError`` with its stderr.

    A ``SLURM_CONF`` naming no file is refused at once: Slurm's commands retry reading it for 60 s first.
    The command runs in a process group of its own, and one that does not answer within ``timeout`` is
    killed with every process it started (a hung ``squeue`` that forked), not itself alone: those in its
    group, and those that left it for a group or session of their own (``_strays``)."""
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
    mark = uuid.uuid4().hex
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**(env if env is not None else os.environ), _MARK: mark},
        start_new_session=True,  # its own process group, which a timeout kills whole
    )
    _running[proc.pid] = mark
    with proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except BaseException:  # the timeout, or serve stopping: no process of the command is left behind
            _kill_all(proc.pid, mark)  # before the wait reaps it: its group's id is no one else's until then
            proc.wait()
            raise
        finally:
            _running.pop(proc.pid, None)
    return proc.returncode, stdout, stderr


_MARK = "GPUWARDEN_SLURM_COMMAND"  # in each command's environment: which run started a process
_running: dict[int, str] = {}  # the Slurm commands running now (each its process group's): their marks


def _strays(pid: int, mark: str) -> set[int]:
    """The processes command ``pid`` started that may have left its process group: its descendants by parent
    (a ``timeout`` makes a group of its own, ``sudo`` with ``use_pty`` a session), and any process whose
    environment carries its ``mark`` (one that put itself in a session of its own and whose parent exited
    since: a daemon's double fork). Empty where there is no ``/proc`` to read."""
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return set()
    parents: dict[int, list[int]] = {}
    out: set[int] = set()
    tag = f"{_MARK}={mark}".encode()
    for found in pids:
        try:
            with open(f"/proc/{found}/stat", "rb") as stat:
                parent = int(stat.read().rsplit(b")", 1)[1].split()[1])
            parents.setdefault(parent, []).append(found)
            with open(f"/proc/{found}/environ", "rb") as environ:
                if tag in environ.read().split(b"\0"):
                    out.add(found)
        except (OSError, ValueError, IndexError):  # ended meanwhile, or another user's environment
            continue
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), ()):
            if child not in out:
                out.add(child)
                todo.append(child)
    out.discard(pid)
    return out


def _kill_all(pid: int, mark: str) -> None:
    """Kill command ``pid``'s process group, then what it started outside the group (``_strays``), found
    first: once the group is killed, its children's parent is init."""
    strays = _strays(pid, mark)
    with contextlib.suppress(ProcessLookupError):  # the whole group ended meanwhile
        os.killpg(pid, signal.SIGKILL)
    for stray in strays:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # ended; become another user's (sudo)
            os.kill(stray, signal.SIGKILL)


@atexit.register
def _kill_running() -> None:
    """Kill the Slurm commands still running when serve exits (stopped during a refresh): in a session of
    their own, a terminal's Ctrl-C or hang-up no longer reaches them."""
    for pid, mark in list(_running.items()):
        _kill_all(pid, mark)
