"""`gpuwarden incidents` (and the other commands that write to serve) stopped by Ctrl-C while serve holds
the request."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest

from tests.integration.servers import free_port

# SIGINT as an operator's terminal leaves it: a suite started in the background (`make test &`, a runner
# without job control) ignores SIGINT, the CLI inherited that, and Ctrl-C did nothing: it waited for its 30 s
# request timeout (a fresh-clone CI run, all four cases).
_CTRL_C_AS_A_TERMINAL = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler);"
    " runpy.run_module('gpuwarden', run_name='__main__', alter_sys=True)"
)


@pytest.mark.parametrize(
    ("argv", "warned"),
    [
        pytest.param(["incidents", "note", "inc-1", "reseated the PSU"], True, id="note"),
        pytest.param(["incidents", "ack", "inc-1"], True, id="ack"),
        pytest.param(["outbox", "retry"], True, id="outbox-retry"),
        pytest.param(["incidents", "show", "inc-1"], False, id="show"),
    ],
)
def test_a_write_interrupted_by_ctrl_c_says_serve_may_still_make_it_before_it_is_sent_again(
    argv: list[str], warned: bool
) -> None:
    # An operator's Ctrl-C on a note that serve was slow to answer exited 130 with nothing said; sent again,
    # the note serve stored after all was on the timeline twice. A timeout said so; Ctrl-C must too.
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", free_port()))
        listening.listen(8)
        listening.settimeout(120)  # a guard against a hang, not a measure: the CLI connects at once
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        cli = [sys.executable, "-c", _CTRL_C_AS_A_TERMINAL, *argv, "--url", url]
        with subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            try:
                held, _ = listening.accept()  # serve took the request and holds it, answering nothing
                with held:
                    proc.send_signal(signal.SIGINT)
                    _, stderr = proc.communicate(timeout=120)
            finally:
                proc.kill()
    said = " ".join(stderr.split())
    assert proc.returncode == 130, said
    assert ("interrupted before serve answered; serve may still carry it out" in said) is warned, said
    if warned:
        assert "look (incidents show, outbox list) before sending it again" in said
