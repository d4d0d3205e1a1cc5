"""The Slack API recorder behaves like Slack where our code depends on it."""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from alerting.notifiers.recorder import SlackRecorder
from gpuwarden.clock import FakeClock
from tests.integration.servers import free_port, running


@pytest.fixture
def recorder() -> Iterator[SlackRecorder]:
    with SlackRecorder() as rec:
        yield rec


@pytest.fixture
def client(recorder: SlackRecorder) -> WebClient:
    return WebClient(token=recorder.token, base_url=recorder.base_url, retry_handlers=[])


def test_payloads_slack_would_refuse_get_invalid_blocks(client: WebClient, recorder: SlackRecorder) -> None:
    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(
            channel="#x", text="t", blocks=[{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}]
        )
    assert caught.value.response["error"] == "invalid_blocks"
    assert "blocks[0].text.type" in caught.value.response["errors"][0]
    assert recorder.channel_messages() == []


def test_replies_need_an_existing_parent(client: WebClient) -> None:
    with pytest.raises(SlackApiError, match="thread_not_found"):
        client.chat_postMessage(channel="#x", text="reply", thread_ts="1.000001")


def test_a_channel_without_threads_refuses_replies_and_takes_messages(
    client: WebClient, recorder: SlackRecorder
) -> None:
    posted = client.chat_postMessage(channel="C0123456789", text="parent")
    recorder.forbid_threads("C0123456789")
    with pytest.raises(SlackApiError, match="restricted_action_non_threadable_channel"):
        client.chat_postMessage(channel="C0123456789", text="reply", thread_ts=posted["ts"])
    client.chat_postMessage(channel="C0123456789", text="another")
    recorder.forbid_threads("C0123456789", forbidden=False)
    client.chat_postMessage(channel="C0123456789", text="reply", thread_ts=posted["ts"])
    assert [m.text for m in recorder.replies(posted["ts"])] == ["reply"]


def test_a_channel_without_threads_refuses_a_file_shared_to_a_thread(
    client: WebClient, recorder: SlackRecorder
) -> None:
    posted = client.chat_postMessage(channel="C0123456789", text="parent")
    recorder.forbid_threads("C0123456789")
    with pytest.raises(SlackApiError, match="restricted_action_non_threadable_channel"):
        client.files_upload_v2(channel="C0123456789", thread_ts=posted["ts"], content=b"x", filename="a.png")
    client.files_upload_v2(channel="C0123456789", content=b"x", filename="a.png")
    assert [(f.filename, f.thread_ts) for f in recorder.files()] == [("a.png", None)]


def test_a_channel_of_thread_replies_only_refuses_messages_and_files_outside_threads(
    client: WebClient, recorder: SlackRecorder
) -> None:
    posted = client.chat_postMessage(channel="C0123456789", text="parent")
    recorder.threads_only("C0123456789")
    for post in (
        lambda: client.chat_postMessage(channel="C0123456789", text="another"),
        lambda: client.files_upload_v2(channel="C0123456789", content=b"x", filename="a.png"),
    ):
        with pytest.raises(SlackApiError, match="restricted_action_thread_only_channel"):
            post()
    client.chat_postMessage(channel="C0123456789", text="reply", thread_ts=posted["ts"])
    recorder.threads_only("C0123456789", only=False)
    client.chat_postMessage(channel="C0123456789", text="another")
    assert [m.text for m in recorder.channel_messages("C0123456789")] == ["parent", "another"]
    assert [m.text for m in recorder.replies(posted["ts"])] == ["reply"]


def test_a_token_without_a_scope_gets_missing_scope_naming_it(
    client: WebClient, recorder: SlackRecorder
) -> None:
    recorder.grant_scopes(["chat:write"])
    posted = client.chat_postMessage(channel="C0123456789", text="parent")
    with pytest.raises(SlackApiError) as caught:
        client.conversations_history(channel="C0123456789")
    assert caught.value.response["error"] == "missing_scope"
    assert caught.value.response["needed"] == "channels:history"
    recorder.grant_scopes([])
    with pytest.raises(SlackApiError, match="missing_scope"):
        client.chat_update(channel=posted["channel"], ts=posted["ts"], text="new")
    recorder.grant_scopes(None)
    client.chat_update(channel=posted["channel"], ts=posted["ts"], text="new")


def test_update_needs_the_channel_id_and_an_existing_ts(client: WebClient) -> None:
    posted = client.chat_postMessage(channel="#x", text="parent")
    with pytest.raises(SlackApiError, match="channel_not_found"):
        client.chat_update(channel="#x", ts=posted["ts"], text="new")
    with pytest.raises(SlackApiError, match="message_not_found"):
        client.chat_update(channel=posted["channel"], ts="9.999999", text="new")
    client.chat_update(channel=posted["channel"], ts=posted["ts"], text="new")


def test_a_channel_given_by_id_is_the_channel_with_that_id(
    client: WebClient, recorder: SlackRecorder
) -> None:
    # Slack takes the id of a channel that exists; a name is a different channel and gets its own id.
    assert client.conversations_history(channel="C0123456789")["messages"] == []
    posted = client.chat_postMessage(channel="C0123456789", text="by id")
    assert posted["channel"] == "C0123456789"
    client.chat_update(channel="C0123456789", ts=posted["ts"], text="edited")
    [message] = client.conversations_history(channel="C0123456789")["messages"]
    assert message["text"] == "edited"
    assert client.chat_postMessage(channel="#x", text="by name")["channel"] not in ("C0123456789", "#x")
    assert recorder.channel_id("C0123456789") == "C0123456789"


def test_channels_named_at_start_exist_before_any_post() -> None:
    with SlackRecorder(channels=["C0123456789", "#ops"]) as recorder:
        assert recorder.state()["channels"] == {"C0123456789": "C0123456789", "#ops": "C00000001"}


def test_metadata_is_returned_only_when_asked_for(client: WebClient) -> None:
    meta = {"event_type": "t", "event_payload": {"key": "k1"}}
    posted = client.chat_postMessage(channel="#x", text="p", metadata=meta)
    plain = client.conversations_history(channel=posted["channel"])
    full = client.conversations_history(channel=posted["channel"], include_all_metadata=True)
    assert "metadata" not in plain["messages"][0]
    assert full["messages"][0]["metadata"] == meta


def test_unknown_methods_and_wrong_tokens_are_refused(recorder: SlackRecorder, client: WebClient) -> None:
    with pytest.raises(SlackApiError, match="unknown_method"):
        client.api_call("chat.fly")
    with pytest.raises(SlackApiError, match="invalid_auth"):
        WebClient(token="xoxb-other", base_url=recorder.base_url).auth_test()


def test_state_survives_a_restart_on_the_same_port(recorder: SlackRecorder, client: WebClient) -> None:
    client.chat_postMessage(channel="#x", text="before")
    port = recorder.port
    recorder.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/_recorder/state")
    recorder.start()
    assert recorder.port == port
    state = httpx.get(f"{recorder.root_url}/_recorder/state").json()
    assert [m["text"] for m in state["messages"]] == ["before"]


def test_an_outage_answers_every_call_until_lifted(recorder: SlackRecorder, client: WebClient) -> None:
    recorder.set_outage(503)
    with pytest.raises(SlackApiError) as caught:
        client.auth_test()
    assert caught.value.response.status_code == 503
    recorder.set_outage(None)
    assert client.auth_test()["ok"] is True


def test_upload_completion_checks_the_uploaded_size(client: WebClient) -> None:
    step1 = client.files_getUploadURLExternal(filename="a.png", length=10)
    httpx.post(step1["upload_url"], content=b"12345")
    with pytest.raises(SlackApiError, match="file_upload_size_mismatch"):
        client.files_completeUploadExternal(files=[{"id": step1["file_id"], "title": "a"}])


def test_recorder_runs_as_a_standalone_server_for_the_demo(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "alerting.notifiers.recorder", "--port", str(port), "--token", "xoxb-demo"]
    with running(argv, f"http://127.0.0.1:{port}/_recorder/state", tmp_path / "recorder.log"):
        client = WebClient(token="xoxb-demo", base_url=f"http://127.0.0.1:{port}/api/", retry_handlers=[])
        client.chat_postMessage(channel="#demo", text="hello")
        state = httpx.get(f"http://127.0.0.1:{port}/_recorder/state").json()
    assert [m["text"] for m in state["messages"]] == ["hello"]


def test_text_past_forty_thousand_characters_is_msg_too_long(
    client: WebClient, recorder: SlackRecorder
) -> None:
    with pytest.raises(SlackApiError, match="msg_too_long"):
        client.chat_postMessage(channel="#x", text="x" * 40_001)
    posted = client.chat_postMessage(channel="#x", text="x" * 40_000)
    with pytest.raises(SlackApiError, match="msg_too_long"):
        client.chat_update(channel=posted["channel"], ts=posted["ts"], text="y" * 40_001)
    assert [len(m.text) for m in recorder.channel_messages()] == [40_000]


def test_every_special_mention_posted_is_noted_with_where_it_was(
    client: WebClient, recorder: SlackRecorder
) -> None:
    attachment = {
        "fallback": "<!here>",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "<!channel> in plain text"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "hi <@U0BOB> &lt;!channel&gt;"}},
        ],
    }
    posted = client.chat_postMessage(channel="#x", text="<!channel|@channel> x", attachments=[attachment])
    client.chat_update(channel=posted["channel"], ts=posted["ts"], text="<!subteam^S0OPS> <#C0GPU>")
    client.chat_postMessage(
        channel="#x", text="a &lt;!everyone&gt; <https://x.example|link> <!date^1^{time}|t>"
    )
    assert recorder.mentions() == [
        "chat.postMessage text: <!channel|@channel>",
        "chat.postMessage attachments[0].fallback: <!here>",
        "chat.postMessage attachments[0].blocks[1].text: <@U0BOB>",
        "chat.update text: <!subteam^S0OPS>",
        "chat.update text: <#C0GPU>",
    ]


def test_a_response_url_post_is_recorded_and_an_empty_one_refused(recorder: SlackRecorder) -> None:
    answer = httpx.post(recorder.response_url, json={"response_type": "ephemeral", "text": "no"})
    assert (answer.status_code, answer.text) == (200, "ok")
    assert httpx.post(recorder.response_url, json={"response_type": "ephemeral"}).status_code == 400
    assert recorder.responses() == [{"response_type": "ephemeral", "text": "no"}]


def test_an_injected_refusal_carries_slacks_errors_detail(client: WebClient, recorder: SlackRecorder) -> None:
    recorder.fail_next("chat.postMessage", status=200, error="invalid_blocks", errors=("blocks[0]: bad",))
    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel="#x", text="t")
    assert caught.value.response["errors"] == ["blocks[0]: bad"]


def test_its_help_says_the_port_and_token_it_uses_unless_told(capsys: pytest.CaptureFixture[str]) -> None:
    """The README tells users to give serve the stand-in's token; ``--help`` showed ``--port PORT`` and
    ``--token TOKEN`` with no word of either default."""
    from alerting.notifiers.recorder import main  # noqa: PLC0415

    with pytest.raises(SystemExit):
        main(["--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert "xoxb-gpuwarden-test" in said and "0: a free port" in said, said


def test_a_taken_port_is_named_with_exit_1_not_a_traceback(
    recorder: SlackRecorder, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's `python -m alerting.notifiers.recorder --port 8010` on a port in use (a recorder left
    running) ended in an OSError traceback, as no other gpuwarden server does; the port is said after the
    option as every bad option is (``--port 8010: ...``), as serve and exporter say it."""
    from alerting.notifiers.recorder import main  # noqa: PLC0415

    with pytest.raises(SystemExit) as stopped:
        main(["--port", str(recorder.port)])
    said = " ".join(capsys.readouterr().err.split())
    assert stopped.value.code == 1 and "Traceback" not in said
    assert said == (
        f"error: --port {recorder.port}: cannot listen on 127.0.0.1:{recorder.port}: Address already in use;"
        " another process"
        " listens there; stop it or choose another port"
    )


@pytest.mark.parametrize("port", ["70000", "-1"], ids=["above-65535", "negative"])
def test_a_port_out_of_range_is_refused_with_exit_2_not_a_traceback(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--port 70000`` got past argparse as an int and ended in bind's OverflowError traceback."""
    from alerting.notifiers.recorder import main  # noqa: PLC0415

    with pytest.raises(SystemExit) as stopped:
        main(["--port", port])
    said = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in said, said
    assert f"argument --port: {port} is not a port (0-65535; 0: a free port)" in said, said


def test_a_client_that_goes_away_mid_request_prints_no_traceback(
    recorder: SlackRecorder, capfd: pytest.CaptureFixture[str]
) -> None:
    # A serve killed while its keep-alive connection is open resets it: socketserver printed a traceback
    # to stderr for each, dozens per run of benchmarks/crash_fuzz.py, burying its progress lines.
    with socket.create_connection((recorder.host, recorder.port)) as sock:
        sock.sendall(b"POST /api/chat.postMessage HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
    assert httpx.get(f"{recorder.root_url}/_recorder/state", timeout=5).status_code == 200  # still serving
    assert "Traceback" not in capfd.readouterr().err


def test_rate_limits_hold_back_one_channels_posts_and_one_method_not_the_others() -> None:
    # Slack's: chat.postMessage about one a second per channel (short bursts), other methods by tier; a call
    # over the limit is a 429 with Retry-After in whole seconds, and other channels and methods go on.
    clock = FakeClock()
    with SlackRecorder(clock=clock, rate_limits=True, channels=["C0000000001", "C0000000002"]) as rec:
        client = WebClient(token=rec.token, base_url=rec.base_url, retry_handlers=[])
        for _ in range(3):  # the burst
            client.chat_postMessage(channel="C0000000001", text="storm")
        with pytest.raises(SlackApiError) as refused:
            client.chat_postMessage(channel="C0000000001", text="storm")
        assert refused.value.response.status_code == 429
        assert refused.value.response.headers["Retry-After"] == "1"
        assert refused.value.response["error"] == "ratelimited"
        client.chat_postMessage(channel="C0000000002", text="another channel")
        ts = rec.channel_messages("C0000000001")[0].ts
        client.chat_update(channel="C0000000001", ts=ts, text="an edit")  # another method
        clock.advance(1.0)
        client.chat_postMessage(channel="C0000000001", text="a second later")
        assert len(rec.channel_messages("C0000000001")) == 4
        assert rec.limits is not None and rec.limits.refused == {"chat.postMessage": 1}
