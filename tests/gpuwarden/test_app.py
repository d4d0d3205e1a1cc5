from pathlib import Path

from gpuwarden.app import build_simulated_pipeline
from gpuwarden.model import FaultKind, GpuRef
from gpuwarden.sim import FaultSpec


def test_a_lost_gpu_becomes_one_incident_and_one_slack_message(tmp_path: Path) -> None:
    pipeline = build_simulated_pipeline(tmp_path / "p.db", nodes=2, gpus_per_node=4, racks=1, seed=3)
    try:
        pipeline.run(15 * 60)  # learn what normal looks like
        assert pipeline.incidents() == []
        pipeline.fleet.inject(FaultSpec("xid", "node-02", gpu=1, xid=79))
        pipeline.run(60)
        incidents = pipeline.incidents()
        assert len(incidents) == 1
        (incident,) = incidents
        assert incident.root_cause.kind == FaultKind.GPU_LOST
        assert isinstance(incident.root_cause.target, GpuRef)
        assert (incident.root_cause.target.node, incident.root_cause.target.index) == ("node-02", 1)
        top_level = pipeline.slack.channel_messages()
        assert len(top_level) == 1
        assert "node-02" in top_level[0].text or "node-02" in str(top_level[0].blocks)
    finally:
        pipeline.close()
