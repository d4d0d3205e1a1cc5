"""The serve traffic benchmark drives what it says it does: every request of its mix is one serve takes (no
400 or 5xx: a mix serve refused would measure nothing), Slack and the webhook are sent to, and its probe reads
serve's heaps from inside."""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks.harness import run_harness


def test_the_serve_traffic_benchmark_drives_every_request_of_its_mix_and_probes_serve(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    args = [
        "--minutes",
        "0.4",
        "--sample-seconds",
        "8",
        "--ops",
        "60",
        "--probe",
        str(probe),
        "--tracemalloc",
    ]
    result = run_harness("bench_serve_traffic.py", *args, timeout=600)
    refused = {k: n for k, n in result["answers"].items() if not k.endswith((" 200", " 409"))}
    assert refused == {"unknown 404": refused.get("unknown 404", 0)}, refused
    assert {k.split()[0] for k in result["answers"]} >= {"post_alerts", "list", "metrics", "ready"}
    assert result["slack_calls"] > 0 and result["webhook_posts"] > 0
    assert len(result["rss_mib"]) >= 3 and result["probe_mib"]
    assert all(p["sqlite_heap"] > 0 and p["malloc_in_use"] > 0 for p in result["probe_mib"])
    assert sorted(p.name for p in probe.glob("snap-*.pickle"))[:1] == ["snap-001.pickle"]
