"""The federation tests' shared fixtures: the misbehaving upstream provider on a free
port, and an app that knows it as the upstream ``province``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from federation.upstream.container import Upstreams
from idp.core.clock import FrozenClock
from tests.federation.fake_upstream import FakeUpstream, serving
from tests.federation.test_upstream_signin import add_fake


@pytest.fixture
def fake(clock: FrozenClock) -> Iterator[FakeUpstream]:
    with serving(lambda: clock.now().timestamp()) as upstream:
        yield upstream


@pytest.fixture
def upstream_app(app: Flask, fake: FakeUpstream) -> Flask:
    add_fake(app, fake)
    Upstreams.of(app).timeouts = (1.0, 1.0)
    return app
