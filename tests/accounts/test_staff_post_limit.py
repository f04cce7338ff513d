"""One rate limit over every staff page's POSTs (/staff/counter, /staff/levels,
/staff/clients and its changes): per account, whatever the outcome, so a stolen staff
session or an account probing the pages cannot hammer them or flood the audit log."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from accounts.staff.services import StaffRole
from idp.core.clock import FrozenClock
from idp.core.runtime import db
from idp.oauth.server import OAuthRuntime
from tests.accounts.test_counter import sign_in_with_otp
from tests.accounts.test_realname import audit_events
from tests.accounts.test_staff_levels import appoint_as
from tests.support import create_user, csrf_token, submit
from tests.support import text as body

LIMIT = 3
CLIENT = {
    "client_id": "tax-portal",
    "redirect_uris": "https://tax.example/cb",
    "scope": "openid",
    "min_level": "1",
}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"staff_posts_per_account_per_hour": LIMIT}


def registered(app: Flask) -> list[str]:
    with app.app_context():
        return [client.client_id for client in OAuthRuntime.of().clients.all(db())]


def assert_limited(response: Any) -> None:
    assert response.status_code == 429
    assert "many forms to the staff pages" in body(response)
    assert 0 < int(response.headers["Retry-After"]) <= 3600


def test_the_staff_pages_share_one_limit_per_account(
    app: Flask, client: FlaskClient, clock: FrozenClock
) -> None:
    create_user(app, "admin")
    appoint_as(
        app,
        "admin",
        StaffRole.COUNTER_VERIFIER,
        StaffRole.LEVEL_ADMINISTRATOR,
        StaffRole.CLIENT_ADMINISTRATOR,
    )
    sign_in_with_otp(app, client, clock, "admin")
    # bad forms count too: one on each page
    assert submit(client, "/staff/counter", {"username": ""}).status_code == 400
    assert submit(client, "/staff/levels", {"username": ""}).status_code == 400
    assert submit(client, "/staff/clients", {"client_id": ""}).status_code == 400
    # the next POST, a good one, is refused and registers nothing
    assert_limited(submit(client, "/staff/clients", CLIENT))
    assert registered(app) == []
    assert [e for e in audit_events(app, "client.create") if e.outcome == "success"] == []
    for url in ("/staff/counter", "/staff/levels", "/staff/clients/tax-portal/delete"):
        token = csrf_token(body(client.get("/staff/clients")))  # looking is not limited
        assert_limited(client.post(url, data={"csrf_token": token}))
    assert registered(app) == []


def test_refused_posts_count_and_the_limited_ones_are_not_audited(
    app: Flask, client: FlaskClient, clock: FrozenClock
) -> None:
    create_user(app, "mallory")
    sign_in_with_otp(app, client, clock, "mallory")
    token = csrf_token(body(client.get("/account")))
    for _ in range(LIMIT):
        assert (
            client.post("/staff/clients", data={"csrf_token": token, **CLIENT}).status_code == 403
        )
    assert_limited(client.post("/staff/clients", data={"csrf_token": token, **CLIENT}))
    assert_limited(client.post("/staff/levels", data={"csrf_token": token, "username": "x"}))
    refused = [e for e in audit_events(app, "client.create") if e.outcome == "failure"]
    assert len(refused) == LIMIT  # no flood of audit events beyond the limit
    assert audit_events(app, "realname.lower") == []


def test_another_staff_member_is_not_limited_by_the_first(
    app: Flask, client: FlaskClient, clock: FrozenClock
) -> None:
    for name in ("admin", "colleague"):
        create_user(app, name)
        appoint_as(app, name, StaffRole.CLIENT_ADMINISTRATOR)
    sign_in_with_otp(app, client, clock, "admin")
    for _ in range(LIMIT):
        submit(client, "/staff/clients", {"client_id": ""})
    assert_limited(submit(client, "/staff/clients", CLIENT))
    other = app.test_client()
    sign_in_with_otp(app, other, clock, "colleague")
    assert submit(other, "/staff/clients", CLIENT).status_code == 200
