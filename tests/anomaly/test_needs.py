from __future__ import annotations

from anomaly.needs import SIGNATURE_NEEDS, XID_COUNTER
from exporters import fields

EXPOSED = {f.sample_name for f in vars(fields).values() if isinstance(f, fields.Family)}


def test_every_query_the_signatures_read_is_a_metric_the_exporter_exposes():
    """A rule reading a name no exporter writes never fires, and config validate would ask for it."""
    names = {name for alternatives in SIGNATURE_NEEDS for name in alternatives}
    assert sorted(names - EXPOSED) == []
    assert XID_COUNTER in EXPOSED
