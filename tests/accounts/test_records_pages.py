"""Service records for organisations (named by their sub or credit code, only when
the client has seen them; their page for those who act for them) and the holder's
page: the records with their timelines, filters, and the rating of a completed record
(CSRF-protected, the holder's only)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.accounts.records_support import Api, OpenApi, client_token, new_record, service
from tests.accounts.test_organisations import ACME_CODE, OTHER_CODE
from tests.accounts.test_realname import audit_events
from tests.oauth.test_acting_for import (
    AGENT,
    authorisation_of,
    grant,
    organisation_id,
    orgs,  # noqa: F401 - a fixture
    tokens_acting_for,
)
from tests.oauth.test_basic_op import claims_of
from tests.oauth_support import RP
from tests.support import create_user, csrf_token, sign_in
from tests.support import text as body


@pytest.fixture
def svc(app: Flask) -> RP:
    return service(app, "svc")


@pytest.fixture
def openapi(client: FlaskClient) -> OpenApi:
    return OpenApi(client)


def org_record(ref: str, external_id: str = "org-case-1") -> dict[str, Any]:
    record = new_record(ref, external_id)
    record["subject"] = {"type": "organisation", "sub": ref}
    return record


# -- organisations -------------------------------------------------------------------------


def test_an_organisation_the_client_has_seen(
    app: Flask,
    client: FlaskClient,
    openapi: OpenApi,
    orgs: None,  # noqa: F811 - the fixture
) -> None:
    grant(app, ACME_CODE)
    svc = service(app, "svc-org", redirect="https://rp.example.gov.cn/svc")
    browser = app.test_client()
    sign_in(browser, AGENT)
    tokens = tokens_acting_for(
        browser, svc, authorisation_of(app, AGENT, ACME_CODE), scope="openid enterprise"
    )
    org_claim = claims_of(app, tokens["id_token"])[1]["org"]
    assert org_claim["uscc"] == ACME_CODE
    api = Api(client, openapi, client_token(client, svc))
    response = api.create(org_record(org_claim["uscc"]))
    assert response.status_code == 201, response.get_json()
    record = response.get_json()
    # named back by the organisation's sub for this client, never by its code
    acme = organisation_id(app, ACME_CODE)
    assert record["subject"] == {"type": "organisation", "sub": acme}
    assert ACME_CODE not in response.get_data(as_text=True)
    # by that sub too: the same record
    again = api.create(org_record(acme))
    assert again.status_code == 200
    assert again.get_json()["id"] == record["id"]
    # the other enterprise has the same representative, but this client never saw it
    for ref in (OTHER_CODE, organisation_id(app, OTHER_CODE)):
        refused = api.create(org_record(ref, "org-case-2"))
        assert refused.status_code == 422, refused.get_json()
        assert refused.get_json()["field"] == "subject.sub"
    # a person's sub does not name an organisation
    refused = api.create(org_record(claims_of(app, tokens["id_token"])[1]["sub"], "org-case-3"))
    assert refused.status_code == 422
    # those who act for the organisation see its records, read-only; nobody else does
    assert api.patch(record["id"], {"status": "accepted", "remark": "已受理"}).status_code == 200
    page = body(browser.get(f"/org/{acme}/records"))
    assert "营业执照办理" in page
    assert "已受理" in page
    assert "/rate" not in page
    assert "营业执照办理" not in body(browser.get("/account/records"))  # not the agent's own
    assert browser.get(f"/org/{organisation_id(app, OTHER_CODE)}/records").status_code == 404
    create_user(app, "mallory")
    outsider = app.test_client()
    sign_in(outsider, "mallory")
    assert outsider.get(f"/org/{acme}/records").status_code == 404
    assert outsider.get("/org/not-an-id/records").status_code == 404
    assert outsider.get("/org/%00/records").status_code == 404


# -- the holder's page ---------------------------------------------------------------------


def pushed(app: Flask, client: FlaskClient, svc: RP, openapi: OpenApi) -> tuple[Api, str]:
    """Alice signs in to ``svc``; it pushes a record for her: the API and the record."""
    create_user(app, "alice")
    tokens, _ = svc.tokens(app.test_client(), username="alice")
    sub = claims_of(app, tokens["id_token"])[1]["sub"]
    api = Api(client, openapi, client_token(client, svc))
    response = api.create(new_record(sub, remark="网上申请", done_online=True))
    assert response.status_code == 201
    record_id: str = response.get_json()["id"]
    return api, record_id


def rate(browser: FlaskClient, record_id: str, satisfaction: str) -> Any:
    page = browser.get("/account")  # a CSRF token of this session
    return browser.post(
        f"/account/records/{record_id}/rate",
        data={"csrf_token": csrf_token(body(page)), "satisfaction": satisfaction},
    )


def test_the_holder_sees_the_timeline_and_rates_a_completed_record(
    app: Flask, client: FlaskClient, svc: RP, openapi: OpenApi
) -> None:
    api, record_id = pushed(app, client, svc, openapi)
    browser = app.test_client()
    sign_in(browser, "alice")
    page = body(browser.get("/account/records"))
    assert "营业执照办理" in page
    assert "网上申请" in page
    assert f"/account/records/{record_id}/rate" not in page  # not completed yet
    # a rating before completion is refused
    response = rate(browser, record_id, "5")
    assert response.status_code == 302
    assert api.get(record_id).get_json()["satisfaction"] is None
    for status, remark in (("accepted", "已受理"), ("completed", "已办结")):
        assert api.patch(record_id, {"status": status, "remark": remark}).status_code == 200
    page = body(browser.get("/account/records"))
    assert re.search(r"已受理.*已办结", page, re.S)
    assert f"/account/records/{record_id}/rate" in page
    response = rate(browser, record_id, "4")
    assert response.status_code == 302
    assert "rating has been saved" in body(browser.get(response.headers["Location"]))
    assert api.get(record_id).get_json()["satisfaction"] == 4
    assert [e.details["satisfaction"] for e in audit_events(app, "records.rate")] == [4]
    # out of range, or no CSRF token: nothing changes
    assert rate(browser, record_id, "9").status_code == 302
    no_csrf = browser.post(f"/account/records/{record_id}/rate", data={"satisfaction": "1"})
    assert no_csrf.status_code == 400
    assert api.get(record_id).get_json()["satisfaction"] == 4


def test_someone_else_cannot_rate_or_see_the_record(
    app: Flask, client: FlaskClient, svc: RP, openapi: OpenApi
) -> None:
    api, record_id = pushed(app, client, svc, openapi)
    api.patch(record_id, {"status": "accepted"})
    api.patch(record_id, {"status": "completed"})
    create_user(app, "mallory")
    browser = app.test_client()
    sign_in(browser, "mallory")
    assert "营业执照办理" not in body(browser.get("/account/records"))
    response = rate(browser, record_id, "1")
    assert response.status_code == 302
    assert "no such record" in body(browser.get(response.headers["Location"])).lower()
    assert api.get(record_id).get_json()["satisfaction"] is None
    for forged in ("%00", "x" * 300):
        response = rate(browser, forged, "1")
        assert response.status_code in (302, 404), response.status_code
    # signed out: to the sign-in page
    anonymous = app.test_client()
    assert anonymous.get("/account/records").status_code == 302


def test_the_page_filters_by_status_and_service(
    app: Flask, client: FlaskClient, svc: RP, openapi: OpenApi
) -> None:
    api, record_id = pushed(app, client, svc, openapi)
    sub = api.get(record_id).get_json()["subject"]["sub"]
    api.create(new_record(sub, "case-2", service_name="社保转移", status="accepted"))
    browser = app.test_client()
    sign_in(browser, "alice")
    both = body(browser.get("/account/records"))
    assert "营业执照办理" in both
    assert "社保转移" in both
    accepted = body(browser.get("/account/records?status=accepted"))
    assert "<h2" in accepted
    assert "营业执照办理</h2>" not in accepted
    assert "社保转移</h2>" in accepted
    by_service = body(browser.get("/account/records?service=营业执照办理"))
    assert "社保转移</h2>" not in by_service
    assert "营业执照办理</h2>" in by_service
    # nonsense filters show everything rather than failing
    assert browser.get("/account/records?status=lost&service=" + "x" * 5000).status_code == 200
