"""The records API under hostile bodies from a client holding a valid token: every
answer is one the OpenAPI document lists, in the documented shape (``Api`` validates
it), never a 500; and nothing but a valid body creates a record."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.accounts.records_support import Api, OpenApi, client_token, new_record, service
from tests.oauth.test_basic_op import claims_of
from tests.support import create_user

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = [
    "external_id",
    "subject",
    "service_name",
    "item_code",
    "status",
    "remark",
    "result_url",
    "done_online",
    "counter_visits",
    "satisfaction",
]
VALID = {
    "status": st.sampled_from(
        ["submitted", "accepted", "in_progress", "more_info_needed", "completed", "rejected"]
    ),
    "counter_visits": st.integers(min_value=0, max_value=1000),
    "done_online": st.booleans(),
    "remark": st.text(min_size=1, max_size=20),
}


def mutated(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A valid body with some fields replaced by anything, some dropped, some added."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        body = dict(base)
        for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
            choice = draw(st.integers(min_value=0, max_value=2))
            if choice == 0:
                body.pop(name, None)
            elif choice == 1 and name in VALID:
                body[name] = draw(VALID[name])
            else:
                body[name] = draw(JSON)
        return body

    return build()


def test_hostile_bodies(app: Flask, client: FlaskClient) -> None:
    svc = service(app, "svc")
    create_user(app, "alice")
    tokens, _ = svc.tokens(app.test_client(), username="alice")
    sub = claims_of(app, tokens["id_token"])[1]["sub"]
    api = Api(client, OpenApi(client), client_token(client, svc))
    existing = api.create(new_record(sub, "fixed")).get_json()["id"]
    seen: set[int] = set()

    @settings(max_examples=120, deadline=None)
    @given(mutated(new_record(sub, "fuzz")), st.dictionaries(st.sampled_from(FIELDS), JSON))
    def one(body: dict[str, Any], patch: dict[str, Any]) -> None:
        created = api.create(body)
        seen.add(created.status_code)
        assert created.status_code in (200, 201, 409, 422), created.get_json()
        changed = api.patch(existing, patch)
        seen.add(changed.status_code)
        assert changed.status_code in (200, 409, 422), changed.get_json()

    one()
    assert {201, 422} <= seen
    listing = api.list("limit=100").get_json()
    external_ids = {r["external_id"] for r in listing["records"]}
    assert external_ids <= {"fixed", "fuzz"}
