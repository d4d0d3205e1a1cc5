"""Training metrics leaving the process: a push never raises into the loop nor makes it wait; serve mode
carries the same labels as push mode."""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporters import training_export
from exporters.training import TrainingMetrics
from exporters.training_export import MAX_BACKOFF_SECONDS, BackgroundPusher, pushgateway_url
from gpuwarden.clock import FakeClock


class RecordingGateway:
    """Stands in for ``push_to_gateway``: records each push with the group's step count at that moment."""

    def __init__(self) -> None:
        self.pushes: list[tuple[str, str, dict[str, str], float | None]] = []
        self.fail_with: BaseException | None = None
        self.lock = threading.Lock()

    def __call__(
        self,
        gateway: str,
        *,
        job: str,
        registry: CollectorRegistry,
        grouping_key: dict[str, str],
        timeout: float,
        handler: Callable[..., Callable[[], None]],
    ) -> None:
        steps = registry.get_sample_value("gpuwarden_training_steps_total", {"rank": grouping_key["rank"]})
        with self.lock:
            self.pushes.append((gateway, job, dict(grouping_key), steps))
        if self.fail_with is not None:
            raise self.fail_with


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> RecordingGateway:
    recorder = RecordingGateway()
    monkeypatch.setattr(training_export, "push_to_gateway", recorder)
    return recorder


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("http://h:1\n", "http://h:1"),
        ("  http://pushgateway:9091/ ", "http://pushgateway:9091"),
        ("127.0.0.1:9091", "http://127.0.0.1:9091"),
        ("https://gw.example/prefix", "https://gw.example/prefix"),
        ("http://proxy/pushgateway/", "http://proxy/pushgateway"),
        ("http://[::1]:9091", "http://[::1]:9091"),
    ],
    ids=[
        "trailing-newline",
        "spaces-and-slash",
        "bare-host-port",
        "path-prefix",
        "route-prefix-slash",
        "ipv6",
    ],
)
def test_a_pushgateway_url_is_normalised_once_at_setup(raw: str, url: str) -> None:
    assert TrainingMetrics("pretrain", pushgateway=raw).pushgateway == url


@pytest.mark.parametrize(
    "raw",
    [
        "not a url",
        "http://h\n:1",
        "ftp://h:21",
        "http://[::1",
        "http://h:1/?x=1",
        "http://h:99999",
        "",
        "  ",
        "http://gw:9091/metrics/job/training",
        "http://gw:9091/metrics",
        "http://proxy/pgw/metrics/job/training/rank/0",
    ],
    ids=[
        "spaces",
        "inner-newline",
        "ftp",
        "ipv6-unclosed",
        "query",
        "bad-port",
        "empty",
        "blank",
        "push-path",
        "metrics-path",
        "push-path-behind-a-prefix",
    ],
)
def test_an_unusable_pushgateway_url_is_refused_at_construction_not_at_push(raw: str) -> None:
    with pytest.raises(ValueError, match="Pushgateway URL"):
        TrainingMetrics("pretrain", pushgateway=raw)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("Invalid header value b'x\\n'"),
        urllib.error.URLError("connection refused"),
        TimeoutError("timed out"),
        RuntimeError("anything else"),
    ],
    ids=["value-error", "url-error", "timeout", "runtime-error"],
)
def test_a_push_that_raises_is_counted_never_raised(gateway: RecordingGateway, error: Exception) -> None:
    gateway.fail_with = error
    m = TrainingMetrics("pretrain", rank=0, pushgateway="http://127.0.0.1:9")
    assert m.push_now() is False
    assert m.flush(timeout=30) is False
    assert m.push_failures >= 2  # the pusher retries on its own after a backoff of 1 s: a slow run sees 3
    failures = m.rank(0).registry.get_sample_value("gpuwarden_training_push_failures_total", {"rank": "0"})
    assert failures is not None and failures >= 2
    # Stop its retries while the failing gateway is still in place: left running, the thread went on to push
    # to the real 127.0.0.1:9 once the fixture was undone, logging into later tests' closed output.
    assert m.close(timeout=30)


def test_an_unreachable_gateway_is_tried_once_per_round_not_once_per_rank(gateway: RecordingGateway) -> None:
    gateway.fail_with = urllib.error.URLError("connection refused")
    m = TrainingMetrics("pretrain", pushgateway="http://127.0.0.1:9")
    for rank in range(4):
        m.rank(rank)
    assert m.push_now() is False
    assert len(gateway.pushes) == 1  # a black hole would have cost 4 timeouts
    assert m.push_failures == 4  # every group's push failed, and each rank counts it


def test_an_http_error_of_one_group_does_not_stop_the_others(gateway: RecordingGateway) -> None:
    gateway.fail_with = urllib.error.HTTPError("http://gw", 400, "bad metric", {}, None)  # type: ignore[arg-type]
    m = TrainingMetrics("pretrain", pushgateway="http://127.0.0.1:9")
    m.rank(0)
    m.rank(1)
    assert m.push_now() is False
    assert [key["rank"] for _, _, key, _ in gateway.pushes] == ["0", "1"]


def test_a_real_refused_connection_is_counted(tmp_path: Any) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = TrainingMetrics(
        "pretrain", namespace="research", pushgateway=f"http://127.0.0.1:{port}", push_timeout=5
    )
    m.rank(0)
    m.rank(1)
    assert m.grouping_key(1) == {"rank": "1", "namespace": "research"}
    assert m.push_now() is False
    assert m.push_failures == 2


def test_push_returns_while_the_gateway_hangs_and_only_the_latest_state_is_pushed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entered, release = threading.Event(), threading.Event()
    pushed: list[float | None] = []

    def hanging_gateway(gateway: str, *, registry: CollectorRegistry, **_: object) -> None:
        pushed.append(registry.get_sample_value("gpuwarden_training_steps_total", {"rank": "0"}))
        entered.set()
        release.wait(60)  # a black-holed gateway: the push blocks until its timeout

    monkeypatch.setattr(training_export, "push_to_gateway", hanging_gateway)
    clock = FakeClock(0.0)
    m = TrainingMetrics("pretrain", rank=0, pushgateway="http://127.0.0.1:9", push_timeout=60, clock=clock)

    def training_loop() -> None:
        for _ in range(50):
            with m.step_timer():
                clock.advance(1.0)
            m.push()
            entered.wait(30)  # from the first push on, the gateway hangs

    loop = threading.Thread(target=training_loop, daemon=True)
    loop.start()
    loop.join(30)
    finished_while_hung = not loop.is_alive() and not release.is_set()
    release.set()
    assert finished_while_hung  # 50 steps, each pushing, while the first push still hung
    assert m.flush(timeout=30)
    assert len(pushed) <= 3  # the hung push, at most one pending, the flush: no queue of 50
    assert pushed[-1] == 50  # the latest state won
    m.close()


def test_close_flushes_the_last_steps(gateway: RecordingGateway) -> None:
    clock = FakeClock(0.0)
    with TrainingMetrics("pretrain", rank=0, pushgateway="http://127.0.0.1:9", clock=clock) as m:
        for _ in range(3):
            with m.step_timer():
                clock.advance(1.0)
    assert gateway.pushes[-1] == ("http://127.0.0.1:9", "pretrain", {"rank": "0"}, 3.0)


def test_a_push_after_close_says_that_nothing_is_pushed(
    gateway: RecordingGateway, caplog: pytest.LogCaptureFixture
) -> None:
    # After close() (leaving `with`), push() answered True and flush() "that push succeeded" while the
    # step recorded since never left the process: the gateway kept the closed run's last push.
    caplog.set_level(logging.WARNING, logger="exporters.training")  # whatever level an earlier test left
    clock = FakeClock(0.0)
    m = TrainingMetrics("pretrain", rank=0, pushgateway="http://127.0.0.1:9", clock=clock)
    with m, m.step_timer():
        clock.advance(1.0)
    with m.step_timer():  # an evaluation after the run, say
        clock.advance(1.0)
    assert m.push() is False
    assert m.flush(timeout=5) is False
    pushed = [steps for *_, steps in gateway.pushes]
    assert pushed[-1] == 1.0 and 2.0 not in pushed
    assert caplog.text.count("push() after close(): not pushed") == 1


def test_a_ranks_first_step_is_pushed_as_it_begins_so_a_hang_in_it_shows(gateway: RecordingGateway) -> None:
    # The loop pushes after its steps, so a rank hung in its first one (the first all-reduce) had pushed
    # nothing: no group on the gateway, and the README's hung-step query found nothing to flag.
    m = TrainingMetrics("pretrain", rank=0, pushgateway="http://127.0.0.1:9", clock=FakeClock(50.0))
    with m.step_timer():
        deadline = time.monotonic() + 10.0
        while not gateway.pushes and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [steps for *_, steps in gateway.pushes] == [0.0]  # its start, before any step ended
    with m.step_timer():  # later steps are pushed when the loop asks
        pass
    m.close()
    assert [steps for *_, steps in gateway.pushes] == [0.0, 2.0]


def test_close_is_bounded_when_the_gateway_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    monkeypatch.setattr(training_export, "push_to_gateway", lambda *a, **k: release.wait(60))
    m = TrainingMetrics("pretrain", rank=0, pushgateway="http://127.0.0.1:9", push_timeout=60)
    m.push()
    assert m.close(timeout=0.1) is False  # it gave up waiting instead of holding the end of the run
    release.set()


def test_push_without_a_gateway_says_so_and_does_not_raise() -> None:
    m = TrainingMetrics("pretrain", rank=0)
    assert m.push() is False
    assert m.flush() is False


def test_after_failures_the_pusher_backs_off_doubling_up_to_a_cap_and_resets_on_success() -> None:
    pusher = BackgroundPusher("http://127.0.0.1:9", "pretrain", list)
    delays = [pusher.next_delay(ok=False) for _ in range(10)]
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0]
    assert delays[-1] == MAX_BACKOFF_SECONDS
    assert delays == sorted(delays)
    assert pusher.next_delay(ok=True) == 0.0
    assert pusher.next_delay(ok=False) == 1.0


def test_a_failed_push_is_tried_again_after_its_backoff_without_another_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The rank hangs right after a failed push and asks for no other: its last state must still arrive.
    monkeypatch.setattr(training_export, "FIRST_BACKOFF_SECONDS", 0.01)
    pushed = threading.Event()
    calls: list[dict[str, str]] = []

    def gateway(url: str, *, grouping_key: dict[str, str], **_: object) -> None:
        calls.append(grouping_key)
        if len(calls) == 1:
            raise urllib.error.URLError("connection refused")
        pushed.set()

    group = ({"rank": "0"}, CollectorRegistry())
    pusher = BackgroundPusher("http://127.0.0.1:9", "pretrain", lambda: [group], push=gateway)
    pusher.request()
    assert pushed.wait(10)
    assert pusher.wait_idle(10) and pusher.last_ok and pusher.failures == 1
    assert pusher.close(10) and calls == [{"rank": "0"}, {"rank": "0"}]


def test_the_pusher_refuses_a_meaningless_timeout() -> None:
    for timeout in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="timeout"):
            BackgroundPusher("http://127.0.0.1:9", "pretrain", list, timeout=timeout)


def test_pushgateway_url_adds_the_scheme_push_to_gateway_would() -> None:
    assert pushgateway_url("gw:9091") == "http://gw:9091"


@pytest.fixture
def served() -> Iterator[TrainingMetrics]:
    m = TrainingMetrics("pretrain", namespace="research", clock=FakeClock(0.0))
    yield m
    m.close()


def scrape(port: int) -> dict[str, dict[str, str]]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {s.name: s.labels for f in text_string_to_metric_families(body) for s in f.samples}


def test_serve_on_port_0_returns_the_port_and_labels_samples_as_push_mode_groups_them(
    served: TrainingMetrics,
) -> None:
    with served.step_timer(rank=1):
        served.report(samples=4)
    port = served.serve(1, 0)
    assert port > 0
    labels = scrape(port)["gpuwarden_training_steps_total"]
    # Push mode: job from the push path, the rest from the grouping key.
    assert labels == {"job": "pretrain", **served.grouping_key(1)}


def test_serve_refuses_an_impossible_port(served: TrainingMetrics) -> None:
    with pytest.raises(ValueError, match="port"):
        served.serve(0, 70000)


def test_serve_on_a_port_in_use_says_where_it_could_not_listen(served: TrainingMetrics) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=rf"cannot listen on 127\.0\.0\.1:{port}: .*another port") as caught:
            served.serve(0, port)
    assert caught.value.errno == errno.EADDRINUSE  # code that tells it apart still can


def test_a_push_path_is_refused_with_the_base_url_to_give_instead() -> None:
    with pytest.raises(
        ValueError, match=r"give the gateway's base URL \(http://gw:9091, with a --web.route-prefix"
    ):
        pushgateway_url("http://gw:9091/metrics/job/training")


@pytest.mark.parametrize(
    "raw",
    [
        "http://pusher:S3cret@pg:9091/metrics/job/x",
        "http://pg:9091/?token=S3cret",
        "http://u:S3cret/x@pg:9091",
    ],
    ids=["password-in-a-push-path", "token-in-a-query", "slash-in-a-password"],
)
def test_a_refused_pushgateway_url_is_said_without_its_credential(raw: str) -> None:
    """The refusal quoted the URL whole, its password or token too (config validate, exporter at start)."""
    with pytest.raises(ValueError, match="Pushgateway URL") as refused:
        pushgateway_url(raw)
    assert "S3cret" not in str(refused.value)


# A password, and a token given as the user name alone (``https://TOKEN@host``), which showed whole.
CREDENTIALS = [
    ("http://pusher:S3cret@127.0.0.1:9", "S3cret", "http://pusher:***@127.0.0.1:9", "'pusher'"),
    ("http://T0k3n@127.0.0.1:9", "T0k3n", "http://***@127.0.0.1:9", "'***'"),
]


@pytest.mark.parametrize(("url", "secret", "shown", "user"), CREDENTIALS, ids=["password", "token-as-user"])
def test_a_failed_push_is_logged_without_the_gateways_password(
    caplog: pytest.LogCaptureFixture, url: str, secret: str, shown: str, user: str
) -> None:
    """The warning's ``gateway`` field (a column of the exporter's JSON log) was the URL whole."""
    used: list[str] = []

    def gateway(url: str, **_: object) -> None:
        used.append(url)
        raise urllib.error.URLError("connection refused")

    group = ({"rank": "0"}, CollectorRegistry())
    pusher = BackgroundPusher(url, "pretrain", lambda: [group], push=gateway)
    with caplog.at_level(logging.WARNING, logger="exporters.training_export"):
        assert not pusher.push_now()
    [record] = caplog.records
    assert record.gateway == shown and secret not in repr(record.__dict__), record.__dict__
    assert used == ["http://127.0.0.1:9"]  # the password goes in an Authorization header, not the URL


@pytest.mark.parametrize(("url", "secret", "shown", "user"), CREDENTIALS, ids=["password", "token-as-user"])
def test_the_handler_a_push_is_given_shows_no_password(url: str, secret: str, shown: str, user: str) -> None:
    """It was ``functools.partial(basic_auth_handler, username=..., password=...)``, whose repr writes the
    password: an error reporter that records a frame's locals (push_to_gateway's ``handler``) sent it on."""
    handlers: list[object] = []

    def gateway(url: str, *, handler: object, **_: object) -> None:
        handlers.append(handler)

    group = ({"rank": "0"}, CollectorRegistry())
    pusher = BackgroundPusher(url, "pretrain", lambda: [group], push=gateway)
    assert pusher.push_now()
    [handler] = handlers
    assert secret not in repr(handler) and secret not in repr(vars(pusher))
    assert f"user={user}" in repr(handler)  # a user with a password is no secret: it says whose they are
