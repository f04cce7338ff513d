"""The service records API (issue 14): idempotent creation, the status graph, a
client's own records and seen subjects only, tokens and scopes, validation that names
the field, oversize bodies, and every answer checked against the OpenAPI document."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.core.runtime import db
from idp.oauth.server import OAuthRuntime
from tests.accounts.records_support import Api, OpenApi, client_token, new_record, service
from tests.accounts.test_realname import audit_events
from tests.oauth.test_basic_op import claims_of
from tests.oauth_support import RP
from tests.support import create_user

VALID_ID = "11010519491231002X"


@pytest.fixture
def svc(app: Flask) -> RP:
    return service(app, "svc")


@pytest.fixture
def openapi(client: FlaskClient) -> OpenApi:
    return OpenApi(client)


def signed_in_sub(app: Flask, _client: FlaskClient, rp: RP, username: str = "alice") -> str:
    """``username`` signs in to ``rp`` in a browser of their own: the ``sub`` that
    client received."""
    tokens, _ = rp.tokens(app.test_client(), username=username)
    sub: str = claims_of(app, tokens["id_token"])[1]["sub"]
    return sub


@pytest.fixture
def alice_sub(app: Flask, client: FlaskClient, svc: RP) -> str:
    create_user(app, "alice")
    return signed_in_sub(app, client, svc)


@pytest.fixture
def api(client: FlaskClient, svc: RP, openapi: OpenApi) -> Api:
    return Api(client, openapi, client_token(client, svc))


def created(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    response = api.create(body)
    assert response.status_code == 201, response.get_json()
    record: dict[str, Any] = response.get_json()
    return record


def refused(response: Any, status: int, error: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = response.get_json()
    assert response.status_code == status, body
    assert body["error"] == error, body
    assert body["field"] == field, body
    assert body["error_description"]
    return body


# -- creation ------------------------------------------------------------------------------


def test_create_and_read_a_record(api: Api, alice_sub: str) -> None:
    record = created(
        api,
        new_record(
            alice_sub,
            remark="网上申请",
            done_online=True,
            result_url="https://svc.example.gov.cn/result/1",
        ),
    )
    assert record["subject"] == {"type": "person", "sub": alice_sub}
    assert record["status"] == "submitted"
    assert [(e["status"], e["remark"]) for e in record["timeline"]] == [("submitted", "网上申请")]
    assert record["done_online"] is True
    assert record["counter_visits"] == 0
    assert record["satisfaction"] is None
    again = api.get(record["id"])
    assert again.status_code == 200
    assert again.get_json() == record


def test_the_same_external_id_never_makes_a_second_record(api: Api, alice_sub: str) -> None:
    first = created(api, new_record(alice_sub, "case-7"))
    repeat = api.create(new_record(alice_sub, "case-7"))
    assert repeat.status_code == 200
    assert repeat.get_json()["id"] == first["id"]
    assert repeat.get_json()["timeline"] == first["timeline"]  # a retry changes nothing
    updated = api.create(new_record(alice_sub, "case-7", status="accepted", counter_visits=1))
    assert updated.status_code == 200
    body = updated.get_json()
    assert body["id"] == first["id"]
    assert body["status"] == "accepted"
    assert body["counter_visits"] == 1
    listing = api.list("external_id=case-7").get_json()
    assert listing["total"] == 1
    # a field not sent is left as it is
    assert api.create(new_record(alice_sub, "case-7")).get_json()["counter_visits"] == 1


def test_an_external_id_of_another_subject_is_a_conflict(
    app: Flask, client: FlaskClient, svc: RP, openapi: OpenApi
) -> None:
    create_user(app, "alice")
    create_user(app, "bob")
    alice, bob = signed_in_sub(app, client, svc), signed_in_sub(app, client, svc, "bob")
    api = Api(client, openapi, client_token(client, svc))
    created(api, new_record(alice, "case-1"))
    refused(api.create(new_record(bob, "case-1")), 409, "conflict", "subject")


# -- transitions ----------------------------------------------------------------------------


def test_valid_transitions_build_the_timeline(api: Api, alice_sub: str) -> None:
    record = created(api, new_record(alice_sub))
    steps = [
        ("accepted", "已受理"),
        ("more_info_needed", "请补充营业场所证明"),
        ("in_progress", "材料已补齐"),
        ("completed", "已办结"),
    ]
    for status, remark in steps:
        response = api.patch(record["id"], {"status": status, "remark": remark})
        assert response.status_code == 200, response.get_json()
    final = api.get(record["id"]).get_json()
    assert final["status"] == "completed"
    assert [(e["status"], e["remark"]) for e in final["timeline"]] == [
        ("submitted", None),
        *steps,
    ]
    times = [e["at"] for e in final["timeline"]]
    assert times == sorted(times)


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ([], "completed"),  # submitted -> completed skips acceptance
        ([], "in_progress"),
        (["accepted", "completed"], "in_progress"),  # completed is final
        (["rejected"], "accepted"),  # rejected is final
        (["accepted", "more_info_needed"], "completed"),
    ],
)
def test_invalid_transitions_are_refused(
    app: Flask, api: Api, alice_sub: str, path: list[str], wanted: str
) -> None:
    record = created(api, new_record(alice_sub))
    for status in path:
        assert api.patch(record["id"], {"status": status}).status_code == 200
    before = api.get(record["id"]).get_json()
    body = refused(
        api.patch(record["id"], {"status": wanted, "remark": "x"}),
        409,
        "invalid_transition",
        "status",
    )
    assert wanted in body["error_description"]
    assert api.get(record["id"]).get_json() == before
    assert any(
        e.outcome == "failure" and e.details.get("reason") == "invalid_transition"
        for e in audit_events(app, "records.update")
    )


def test_the_same_status_again_is_no_transition(api: Api, alice_sub: str) -> None:
    record = created(api, new_record(alice_sub))
    assert api.patch(record["id"], {"status": "accepted"}).status_code == 200
    again = api.patch(record["id"], {"status": "accepted", "counter_visits": 2})
    assert again.status_code == 200
    assert [e["status"] for e in again.get_json()["timeline"]] == ["submitted", "accepted"]
    assert again.get_json()["counter_visits"] == 2


def test_a_remark_needs_a_status(api: Api, alice_sub: str) -> None:
    record = created(api, new_record(alice_sub))
    refused(api.patch(record["id"], {"remark": "hello"}), 422, "invalid_request", "remark")


# -- authorisation -------------------------------------------------------------------------


def test_a_client_sees_only_its_own_records(
    app: Flask, client: FlaskClient, api: Api, alice_sub: str, openapi: OpenApi
) -> None:
    record = created(api, new_record(alice_sub))
    other = service(app, "other")
    signed_in_sub(app, client, other)  # alice uses the other service too
    theirs = Api(client, openapi, client_token(client, other))
    refused(theirs.get(record["id"]), 404, "not_found")
    refused(theirs.patch(record["id"], {"status": "rejected"}), 404, "not_found")
    assert theirs.list().get_json()["total"] == 0
    assert api.get(record["id"]).get_json()["status"] == "submitted"
    # the same external id is the other client's own, separate record
    mine = theirs.create(new_record(alice_sub, record["external_id"]))
    assert mine.status_code == 201
    assert mine.get_json()["id"] != record["id"]


def test_an_unseen_subject_is_refused(
    app: Flask, client: FlaskClient, svc: RP, openapi: OpenApi
) -> None:
    create_user(app, "alice")
    bob = create_user(app, "bob")  # has never signed in to svc
    other = service(app, "other")
    alice_at_other = signed_in_sub(app, client, other)  # alice signed in elsewhere only
    api = Api(client, openapi, client_token(client, svc))
    for sub in (bob.public_id, alice_at_other, "no-such-subject"):
        body = refused(api.create(new_record(sub)), 422, "unknown_subject", "subject.sub")
        assert "subject" in body["error_description"]
    assert api.list().get_json()["total"] == 0
    failures = [e for e in audit_events(app, "records.create") if e.outcome == "failure"]
    assert len(failures) == 3


def test_pairwise_subjects(app: Flask, client: FlaskClient, openapi: OpenApi) -> None:
    alice = create_user(app, "alice")
    pairwise = service(app, "tax", subject_type="pairwise", sector_identifier="tax.dg.gov.cn")
    # same sector, so the same pairwise sub: but this client has not seen alice
    sibling = service(app, "tax-b", subject_type="pairwise", sector_identifier="tax.dg.gov.cn")
    sub = signed_in_sub(app, client, pairwise)
    assert sub != alice.public_id
    api = Api(client, openapi, client_token(client, pairwise))
    record = created(api, new_record(sub))
    assert record["subject"]["sub"] == sub
    refused(
        api.create(new_record(alice.public_id, "case-2")), 422, "unknown_subject", "subject.sub"
    )
    stranger = Api(client, openapi, client_token(client, sibling))
    refused(stranger.create(new_record(sub)), 422, "unknown_subject", "subject.sub")


def test_tokens_and_scopes(
    app: Flask, client: FlaskClient, svc: RP, alice_sub: str, openapi: OpenApi
) -> None:
    nobody = Api(client, openapi, None)
    for response in (nobody.list(), nobody.create(new_record(alice_sub))):
        refused(response, 401, "invalid_token")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    refused(Api(client, openapi, "not-a-token").list(), 401, "invalid_token")
    basic = Api(client, openapi, None).call(
        "GET", "/api/v1/records", headers={"Authorization": svc.basic()["Authorization"]}
    )
    refused(basic, 401, "invalid_token")
    # the client's own token, without the scope
    narrow = Api(client, openapi, client_token(client, svc, scope="enterprise"))
    response = narrow.create(new_record(alice_sub))
    refused(response, 403, "insufficient_scope")
    assert 'scope="records:write"' in response.headers["WWW-Authenticate"]
    # a token a person gave the client (authorization code) is not the client's own
    tokens, _ = svc.tokens(app.test_client(), username="alice", scope="openid profile")
    personal = Api(client, openapi, tokens["access_token"])
    refused(personal.list(), 403, "insufficient_scope")
    # the scope taken away from the client: its live token stops working for records
    api = Api(client, openapi, client_token(client, svc))
    assert api.list().status_code == 200
    with app.app_context():
        OAuthRuntime.of().clients.update(db(), "svc", scope="openid profile enterprise")
    refused(api.list(), 403, "insufficient_scope")
    assert [e.details["reason"] for e in audit_events(app, "records.access")] == [
        "scope",
        "not the client's own token",
        "scope",
    ]


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"service_name": None}, "service_name"),
        ({"service_name": ""}, "service_name"),
        ({"item_code": "has space"}, "item_code"),
        ({"external_id": "x" * 129}, "external_id"),
        ({"external_id": f"case-{VALID_ID}"}, "external_id"),
        ({"status": "lost"}, "status"),
        ({"remark": f"申请人身份证 {VALID_ID}"}, "remark"),
        ({"remark": "a\x00b"}, "remark"),
        ({"result_url": "http://svc.example.gov.cn/r"}, "result_url"),
        ({"result_url": "javascript:alert(1)"}, "result_url"),
        ({"result_url": f"https://svc.example.gov.cn/r?id={VALID_ID}"}, "result_url"),
        ({"done_online": "true"}, "done_online"),
        ({"counter_visits": -1}, "counter_visits"),
        ({"counter_visits": "2"}, "counter_visits"),
        ({"counter_visits": 1.5}, "counter_visits"),
        ({"satisfaction": 5}, "satisfaction"),  # set by the holder, never by the client
        ({"id_number": VALID_ID}, "id_number"),
        ({"subject": {"type": "robot", "sub": "x"}}, "subject.type"),
        ({"subject": {"type": "person"}}, "subject.sub"),
    ],
)
def test_validation_names_the_field(
    api: Api, alice_sub: str, change: dict[str, Any], field: str
) -> None:
    body = new_record(alice_sub)
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    refused(api.create(body), 422, "invalid_request", field)
    assert api.list().get_json()["total"] == 0


def test_a_missing_field_is_named(api: Api, alice_sub: str) -> None:
    body = new_record(alice_sub)
    del body["item_code"]
    refused(api.create(body), 422, "invalid_request", "item_code")
    record = created(api, new_record(alice_sub))
    refused(
        api.patch(record["id"], {"counter_visits": -2}), 422, "invalid_request", "counter_visits"
    )
    refused(api.patch(record["id"], {"external_id": "new"}), 422, "invalid_request", "external_id")


def test_bodies_that_are_not_json_objects(api: Api, alice_sub: str) -> None:
    refused(api.call("POST", "/api/v1/records", raw=b"{not json"), 400, "invalid_request")
    refused(api.call("POST", "/api/v1/records", [new_record(alice_sub)]), 400, "invalid_request")
    refused(api.call("POST", "/api/v1/records", raw=b"[" * 5000), 400, "invalid_request")
    refused(api.call("POST", "/api/v1/records", raw=b"\xff\xfe"), 400, "invalid_request")
    refused(
        api.call("POST", "/api/v1/records", raw=b"external_id=1", content_type="text/plain"),
        415,
        "unsupported_media_type",
    )


def test_list_parameters_are_checked(api: Api, alice_sub: str) -> None:
    refused(api.list("status=lost"), 422, "invalid_request", "status")
    refused(api.list("limit=1000"), 422, "invalid_request", "limit")
    refused(api.list("offset=-1"), 422, "invalid_request", "offset")
    refused(api.list("colour=red"), 422, "invalid_request", "colour")
    refused(api.list("service=%ff"), 400, "invalid_request")  # not UTF-8: the app's guard
    refused(api.list("service=a%00b"), 400, "invalid_request")


def test_an_oversize_body_is_refused(api: Api, alice_sub: str) -> None:
    body = new_record(alice_sub, remark="长" * 6000)  # 18 KB of UTF-8
    refused(api.create(body), 413, "payload_too_large")
    huge = new_record(alice_sub, remark="x" * 100_000)  # over the app's own limit too
    refused(api.create(huge), 413, "payload_too_large")
    assert api.list().get_json()["total"] == 0


def test_unknown_records_and_methods(api: Api) -> None:
    refused(api.get("00000000-0000-0000-0000-000000000000"), 404, "not_found")
    refused(api.get("x" * 36), 404, "not_found")
    response = api.client.get(
        "/api/v1/records/%00", headers={"Authorization": f"Bearer {api.token}"}
    )
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"
    response = api.client.delete(
        "/api/v1/records", headers={"Authorization": f"Bearer {api.token}"}
    )
    assert response.status_code == 405
    assert set(response.get_json()) == {"error", "error_description", "field"}
    response = api.client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


# -- listing -------------------------------------------------------------------------------


def test_list_filters_and_pages(api: Api, alice_sub: str) -> None:
    for n, (name, status) in enumerate(
        [("营业执照办理", "submitted"), ("社保转移", "accepted"), ("社保转移", "submitted")]
    ):
        created(api, new_record(alice_sub, f"case-{n}", service_name=name, status=status))
    everything = api.list().get_json()
    assert everything["total"] == 3
    assert [r["external_id"] for r in everything["records"]] == ["case-2", "case-1", "case-0"]
    assert {r["external_id"] for r in api.list("status=submitted").get_json()["records"]} == {
        "case-0",
        "case-2",
    }
    social = api.list("service=社保转移&status=accepted").get_json()
    assert [r["external_id"] for r in social["records"]] == ["case-1"]
    page = api.list("limit=2&offset=2").get_json()
    assert (page["total"], page["offset"], page["limit"], len(page["records"])) == (3, 2, 2, 1)


# -- the document ------------------------------------------------------------------------


def test_the_openapi_document(client: FlaskClient, openapi: OpenApi) -> None:
    document = openapi.document
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {"/records", "/records/{record_id}"}
    schemas = document["components"]["schemas"]
    assert {"RecordCreate", "RecordUpdate", "Record", "RecordList", "Error"} <= set(schemas)
    assert "satisfaction" not in schemas["RecordCreate"]["properties"]
    assert schemas["RecordCreate"]["additionalProperties"] is False
    scheme = document["components"]["securitySchemes"]["clientCredentials"]
    assert "records:write" in scheme["flows"]["clientCredentials"]["scopes"]
    # no token is needed to read it
    assert client.get("/api/v1/openapi.json").status_code == 200


def test_every_documented_answer_was_seen(api: Api, alice_sub: str, openapi: OpenApi) -> None:
    """A walk through the API in which each answer is checked against the document
    (``Api`` checks every call of every test the same way)."""
    record = created(api, new_record(alice_sub))
    api.create(new_record(alice_sub))
    api.get(record["id"])
    api.patch(record["id"], {"status": "accepted"})
    api.patch(record["id"], {"status": "submitted"})
    api.patch(record["id"], {"counter_visits": -1})
    api.list("status=accepted")
    api.list("limit=0")
    api.get("00000000-0000-0000-0000-000000000000")
    Api(api.client, openapi, None).list()
    statuses = {(m, t, s) for m, t, s in openapi.checked}
    assert {
        ("POST", "/records", 201),
        ("POST", "/records", 200),
        ("GET", "/records/{record_id}", 200),
        ("PATCH", "/records/{record_id}", 200),
        ("PATCH", "/records/{record_id}", 409),
        ("PATCH", "/records/{record_id}", 422),
        ("GET", "/records", 200),
        ("GET", "/records", 422),
        ("GET", "/records/{record_id}", 404),
        ("GET", "/records", 401),
    } <= statuses


def test_parallel_creations_make_one_record(app: Flask, api: Api, alice_sub: str) -> None:
    statuses: list[int] = []
    ids: set[str] = set()
    barrier = threading.Barrier(4)

    def create() -> None:
        barrier.wait()
        response = app.test_client().post(
            "/api/v1/records",
            json=new_record(alice_sub, "case-parallel"),
            headers={"Authorization": f"Bearer {api.token}"},
        )
        statuses.append(response.status_code)
        ids.add(response.get_json().get("id", ""))

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 200, 200, 201], statuses
    assert len(ids) == 1
    assert api.list("external_id=case-parallel").get_json()["total"] == 1
