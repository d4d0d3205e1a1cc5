"""Fixtures that several of the anomaly tests' modules take."""

from __future__ import annotations

import pytest

from tests.anomaly.fakes import FakePrometheus


@pytest.fixture
def fake_prometheus(request):
    fake = FakePrometheus()
    request.addfinalizer(fake.close)
    return fake


@pytest.fixture(scope="module")
def server():
    fake = FakePrometheus()
    yield fake
    fake.close()  # waits out serve_forever's poll: once for the module, not per test


@pytest.fixture
def prometheus(server):
    server.answers.clear()
    server.errors.clear()
    return server
