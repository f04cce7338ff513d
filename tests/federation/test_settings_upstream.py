"""An upstream from the settings (``[[upstream_providers]]``) is an upstream like one
added by the command line: listed, linked from the sign-in page, signed in with; its
discovery is fetched when first needed (and an upstream that is down then is a clear
page)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from federation.upstream.container import Upstreams
from tests.federation.fake_upstream import CLIENT_ID, CLIENT_SECRET, FakeUpstream
from tests.federation.test_upstream_signin import (
    NAME,
    PERSON,
    confirmed_holder,
    failures,
    invoke,
    invoke_json,
    round_trip,
    signed_in_as,
)
from tests.support import text


@pytest.fixture
def settings_overrides(fake: FakeUpstream) -> dict[str, Any]:
    entry = {
        "name": "province",
        "issuer": fake.url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "identity_claim": "id_number",
        "identity_type": "resident_id",
        "level_claim": "level",
        "level_map": ["gov:3=3"],
        "display_name": "省级平台",
    }
    return {"upstream_providers": [entry]}


def test_a_settings_upstream_is_listed_and_cannot_be_removed_by_the_command(app: Flask) -> None:
    [listed] = invoke_json(app, "list")
    assert listed["source"] == "settings"
    assert listed["display_name"] == "省级平台"
    assert listed["redirect_uri"] == "http://localhost/federation/province/callback"
    assert CLIENT_SECRET not in str(listed)
    refused = invoke(app, "remove", "province")
    assert refused.exit_code == 1
    assert "settings file" in refused.output


def test_a_settings_upstream_signs_in(app: Flask, fake: FakeUpstream) -> None:
    confirmed_holder(app, level=3)
    fake.claims = {"id_number": PERSON, "name": NAME, "level": "gov:3"}
    client = app.test_client()
    login = text(client.get("/login", headers={"Accept-Language": "zh-CN"}))
    assert "/federation/province/login" in login
    assert "省级平台" in login
    assert round_trip(client, fake).location == "/account"
    assert "holder" in (signed_in_as(client) or "")


def test_an_upstream_down_at_the_start_is_a_clear_page(app: Flask, fake: FakeUpstream) -> None:
    Upstreams.of(app).timeouts = (1.0, 1.0)
    fake.mode.add("wrong_discovery_issuer")
    answer = app.test_client().get("/federation/province/login")
    assert answer.status_code == 502
    assert "<html" in text(answer).lower()
    assert failures(app) == ["issuer_mismatch"]
    assert app.test_client().get("/federation/nobody/login").status_code == 404
