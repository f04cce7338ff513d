"""The session principal: its shape in the session, and a round trip through the
server-side session (store) including "acting for an organisation"."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient
from flask.typing import ResponseReturnValue

from idp.core.principal import ActingFor, Principal
from idp.core.sessions import current_principal, set_acting_for
from tests.support import create_user, sign_in

ACTING = ActingFor(organisation="org-public-id", authorisation="mandate-42")


def test_a_principal_round_trips_through_session_data() -> None:
    principal = Principal.signed_in(
        uid=7, sub="abc", auth_time=1700000000.5, amr=["pwd", "otp", "mfa"], sid="sid-1"
    )
    data = json.loads(json.dumps(principal.to_session()))  # as the store keeps it
    assert data == {
        "uid": 7,
        "sub": "abc",
        "auth_time": 1700000000.5,
        "amr": ["pwd", "otp", "mfa"],
        "sid": "sid-1",
    }
    assert Principal.from_session(data) == principal
    acting = principal.acting(ACTING)
    data = json.loads(json.dumps(acting.to_session()))
    assert data["act"] == {"org": "org-public-id", "authz": "mandate-42"}
    assert Principal.from_session(data) == acting
    assert Principal.from_session(data).acting_for == ACTING  # type: ignore[union-attr]
    assert acting.acting(None) == principal


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"csrf_token": "x"},  # an anonymous session
        {"uid": "7", "sub": "abc", "auth_time": 1.0, "amr": [], "sid": "s"},
        {"uid": True, "sub": "abc", "auth_time": 1.0, "amr": [], "sid": "s"},
        {"uid": 7, "auth_time": 1.0, "amr": [], "sid": "s"},
        {"uid": 7, "sub": "abc", "auth_time": "1", "amr": [], "sid": "s"},
        {"uid": 7, "sub": "abc", "auth_time": 1.0, "amr": "pwd", "sid": "s"},
        {"uid": 7, "sub": "abc", "auth_time": 1.0, "amr": [], "sid": None},
    ],
)
def test_what_is_not_a_principal(data: dict[str, Any]) -> None:
    assert Principal.from_session(data) is None


def test_a_malformed_acting_for_is_ignored() -> None:
    data = {"uid": 7, "sub": "abc", "auth_time": 1.0, "amr": ["pwd"], "sid": "s", "act": "x"}
    principal = Principal.from_session(data)
    assert principal is not None
    assert principal.acting_for is None
    assert ActingFor.from_session({"org": "o", "authz": 3}) is None


def _principal_view() -> ResponseReturnValue:
    principal = current_principal()
    if principal is None:
        return jsonify(None)
    acting = principal.acting_for
    return jsonify(
        uid=principal.uid,
        sub=principal.sub,
        amr=list(principal.amr),
        sid=principal.sid,
        acting=None if acting is None else [acting.organisation, acting.authorisation],
    )


def _act_view() -> ResponseReturnValue:
    set_acting_for(ACTING)
    return "", 204


@pytest.fixture
def principal_app(app: Flask) -> Flask:
    app.add_url_rule("/test/principal", view_func=_principal_view)
    app.add_url_rule("/test/act", view_func=_act_view, methods=["POST"])
    app.extensions["csrf"].exempt(_act_view)
    return app


def test_acting_for_round_trips_through_the_server_side_session(
    principal_app: Flask, client: FlaskClient
) -> None:
    user = create_user(principal_app)
    assert client.get("/test/principal").get_json() is None
    sign_in(client)
    before = client.get("/test/principal").get_json()
    assert before["uid"] == user.id
    assert before["sub"] == user.public_id
    assert before["amr"] == ["pwd"]
    assert before["acting"] is None
    assert client.post("/test/act").status_code == 204
    # a later request (another worker would read the same store) sees it
    after = principal_app.test_client()
    cookie = client.get_cookie("idp_session")
    assert cookie is not None
    after.set_cookie("idp_session", cookie.value)
    seen = after.get("/test/principal").get_json()
    assert seen["acting"] == ["org-public-id", "mandate-42"]
    assert {key: seen[key] for key in ("uid", "sub", "amr", "sid")} == {
        key: before[key] for key in ("uid", "sub", "amr", "sid")
    }
    assert client.get("/account").status_code == 200  # still signed in as the person
