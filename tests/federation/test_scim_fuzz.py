"""Property-based fuzz of the SCIM query language and bodies with a valid token: any
filter, sortBy, paging or attribute list, and any JSON body for create and PATCH, is
answered below 500 with SCIM's own error shape, and bad input creates nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from accounts.container import Accounts
from federation.scim.models import ScimUser
from federation.scim.schema import CORE_USER, PATCH_OP
from idp.core.runtime import db
from tests.federation.test_scim import BASE, Scim
from tests.oauth_support import register

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)

ATTRIBUTES = [
    "userName",
    "externalId",
    "emails.value",
    "emails",
    "meta.lastModified",
    "active",
    "displayName",
    "id",
    "password",
    "nosuch",
    "emails.type",
    "name.givenName",
    "urn:ietf:params:scim:schemas:core:2.0:User:userName",
]
OPERATORS = ["eq", "ne", "co", "sw", "ew", "pr", "gt", "ge", "lt", "le", "zz", "EQ", "Co"]
VALUES = st.one_of(
    st.sampled_from(
        ['"a"', '"2026-12-03T00:00:00Z"', "true", "false", "null", "1", '""', '"%_\\\\"']
    ),
    st.text(max_size=12).map(json.dumps),
)


@st.composite
def expressions(draw: st.DrawFn, depth: int = 0) -> str:
    choice = draw(st.integers(0, 5 if depth < 2 else 1))
    if choice <= 1:
        attribute, operator = draw(st.sampled_from(ATTRIBUTES)), draw(st.sampled_from(OPERATORS))
        if operator == "pr":
            return f"{attribute} pr"
        return f"{attribute} {operator} {draw(VALUES)}"
    if choice == 2:
        return f"not ({draw(expressions(depth + 1))})"
    if choice == 3:
        return f"({draw(expressions(depth + 1))})"
    if choice == 4:
        return f"emails[{draw(expressions(depth + 1))}]"
    joiner = draw(st.sampled_from([" and ", " or ", " AND ", " Or "]))
    return draw(expressions(depth + 1)) + joiner + draw(expressions(depth + 1))


FILTERS = st.one_of(expressions(), st.text(max_size=40))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


def check(response: Any) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        assert response.mimetype == "application/scim+json", response.headers
        body = json.loads(response.get_data(as_text=True))
        assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
        assert body["status"] == str(response.status_code)


@pytest.fixture
def scim(app: Flask, client: FlaskClient) -> Scim:
    _, secret = register(app, "hall", grant_types=["client_credentials"], scope="scim")
    made = Scim(client, "hall", secret or "")
    made.create("anna", emails=[{"value": "anna@city.cn"}], externalId="e-1")
    return made


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def test_any_filter_sort_and_page_is_answered_safely(scim: Scim) -> None:
    @FUZZ
    @given(
        FILTERS,
        st.one_of(st.none(), st.sampled_from(ATTRIBUTES), st.text(max_size=10)),
        st.one_of(st.none(), st.sampled_from(["ascending", "descending"]), st.text(max_size=5)),
        st.one_of(st.none(), st.integers(-5, 10**12).map(str), st.text(max_size=5)),
        st.one_of(st.none(), st.sampled_from(ATTRIBUTES), st.text(max_size=20)),
    )
    def one(
        expression: str,
        sort_by: str | None,
        order: str | None,
        index: str | None,
        attributes: str | None,
    ) -> None:
        query = {
            "filter": expression,
            "sortBy": sort_by,
            "sortOrder": order,
            "startIndex": index,
            "count": index,
            "attributes": attributes,
        }
        sent = {name: value for name, value in query.items() if value is not None}
        check(scim.client.get(BASE + "/Users", query_string=sent, headers=scim.bearer))

    one()


def test_any_body_is_answered_safely_and_creates_nothing_when_refused(
    app: Flask, scim: Scim
) -> None:
    @FUZZ
    @given(JSON, JSON)
    def one(extra: Any, operations: Any) -> None:
        body = {"schemas": [CORE_USER], "userName": "fuzzed"}
        if isinstance(extra, dict):
            body.update(extra)
        response = scim.call("POST", "/Users", body)
        check(response)
        if response.status_code == 201:
            user_id = json.loads(response.get_data(as_text=True))["id"]
            check(
                scim.call(
                    "PATCH", f"/Users/{user_id}", {"schemas": [PATCH_OP], "Operations": operations}
                )
            )
            assert scim.call("DELETE", f"/Users/{user_id}").status_code == 204
            # the name stays taken by the disabled account: free it for the next example
            with app.app_context():
                user = Accounts.of().account_service().find_by_username("fuzzed")
                assert user is not None
                db().execute(delete(ScimUser).where(ScimUser.user_id == user.id))
                db().delete(user)
                db().commit()
        else:
            with app.app_context():
                assert Accounts.of().account_service().find_by_username("fuzzed") is None
                assert db().scalar(select(func.count()).select_from(ScimUser)) == 1
        check(
            scim.client.post(
                BASE + "/Users/.search",
                data=json.dumps(extra),
                content_type="application/scim+json",
                headers=scim.bearer,
            )
        )

    one()
