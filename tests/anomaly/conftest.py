"""Fixtures that several of the anomaly tests' modules take."""

from __future__ import annotations

import pytest

from tests.anomaly.fakes import FakePrometheus


@pytest.fixture
def fake_prometheus(request):
    fake = FakePrometheus()
    request.addfinalizer(fake.close)
    return fake
