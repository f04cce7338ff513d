"""SCIM 2.0 provisioning (RFC 7643/7644) at /scim/v2/, on both back ends: a client
with the scope ``scim`` creates, reads, replaces, patches, lists, searches and
deactivates accounts; deactivation ends the account's sessions and tokens. From the
attacker's side: no token, a wrong or a user's token, another client's accounts, bad
filters and paths, stale versions, duplicate names, read-only attributes."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Mapping
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from accounts.container import Accounts
from accounts.realname.models import VerificationMethod
from federation.scim.models import ScimUser
from federation.scim.schema import CITY_USER, CORE_USER, PATCH_OP, SEARCH_REQUEST
from idp.core.audit.models import AuditEvent
from idp.core.runtime import audit_log, db
from idp.oauth.models import LogoutDelivery
from idp.oauth.server import OAuthRuntime
from tests.oauth_support import RP, register
from tests.support import STRONG_PASSWORD, create_user

BASE = "/scim/v2"


class Scim:
    """A SCIM client: its own access token from the client credentials grant."""

    def __init__(self, client: FlaskClient, client_id: str, secret: str, scope: str = "scim"):
        self.client = client
        raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        self.basic = {"Authorization": f"Basic {raw}"}
        response = client.post(
            "/token", data={"grant_type": "client_credentials", "scope": scope}, headers=self.basic
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        self.token = response.get_json()["access_token"]

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: Mapping[str, Any] | None = None,
        **query: Any,
    ) -> TestResponse:
        sent = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        data = None if body is None else json.dumps(body)
        return self.client.open(
            BASE + path,
            method=method,
            data=data,
            query_string=query or None,
            headers=sent,
            content_type="application/scim+json" if data is not None else None,
        )

    def create(self, user_name: str = "bjensen", **values: Any) -> dict[str, Any]:
        body = {"schemas": [CORE_USER], "userName": user_name, **values}
        response = self.call("POST", "/Users", body)
        assert response.status_code == 201, response.get_data(as_text=True)
        return json_of(response)


def json_of(response: TestResponse) -> dict[str, Any]:
    assert response.mimetype == "application/scim+json", response.headers
    value = json.loads(response.get_data(as_text=True))
    assert isinstance(value, dict)
    return value


def assert_error(response: TestResponse, status: int, scim_type: str | None = None) -> None:
    body = json_of(response)
    assert response.status_code == status, body
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type, body


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


@pytest.fixture
def scim(app: Flask, client: FlaskClient) -> Scim:
    _, secret = register(app, "hall", grant_types=["client_credentials"], scope="scim")
    assert secret
    return Scim(client, "hall", secret)


# -- authentication


def test_no_token_is_a_401_scim_error(client: FlaskClient, scim: Scim) -> None:
    for path in ("/Users", "/ServiceProviderConfig", "/Users/x", "/nowhere"):
        response = client.get(BASE + path)
        assert_error(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_forged_or_revoked_token_is_refused(app: Flask, scim: Scim) -> None:
    good = scim.token
    scim.token = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    assert_error(scim.call("GET", "/Users"), 401)
    scim.token = "not a token"
    assert_error(scim.call("GET", "/Users"), 401)
    scim.token = good
    assert scim.call("GET", "/Users").status_code == 200
    revoked = scim.client.post("/revoke", data={"token": good}, headers=scim.basic)
    assert revoked.status_code == 200
    assert_error(scim.call("GET", "/Users"), 401)


def test_a_token_without_the_scim_scope_is_a_403(app: Flask, client: FlaskClient) -> None:
    _, secret = register(app, "reader", grant_types=["client_credentials"], scope="api.read")
    assert secret
    other = Scim(client, "reader", secret, scope="api.read")
    response = other.call("GET", "/Users")
    assert_error(response, 403)
    assert 'scope="scim"' in response.headers["WWW-Authenticate"]
    assert (
        other.call("POST", "/Users", {"schemas": [CORE_USER], "userName": "x"}).status_code == 403
    )
    with app.app_context():
        refused = db().scalars(select(AuditEvent).where(AuditEvent.event == "scim.access")).all()
    assert refused
    assert all(e.outcome == "failure" and e.actor == "client:reader" for e in refused)


def test_a_users_token_with_the_scim_scope_is_not_the_clients_own(
    app: Flask, client: FlaskClient
) -> None:
    """A token a person granted (authorization code) names the person: SCIM refuses
    it even with the scope scim, which only the client's own token may carry here."""
    create_user(app)
    _, secret = register(
        app,
        "rp",
        first_party=True,
        scope="openid profile scim",
        grant_types=["authorization_code", "client_credentials"],
    )
    rp = RP(app, "rp", secret)
    tokens, _ = rp.tokens(app.test_client(), scope="openid scim")
    assert "scim" in tokens["scope"].split()
    scim = Scim(client, "rp", secret or "")
    scim.token = tokens["access_token"]
    assert_error(scim.call("GET", "/Users"), 403)


def test_a_scope_taken_from_the_client_ends_its_live_tokens(app: Flask, scim: Scim) -> None:
    assert scim.call("GET", "/Users").status_code == 200
    with app.app_context():
        OAuthRuntime.of().clients.update(db(), "hall", scope="api.read")
    assert_error(scim.call("GET", "/Users"), 403)


# -- discovery


def test_service_provider_config_schemas_and_resource_types(scim: Scim) -> None:
    config = json_of(scim.call("GET", "/ServiceProviderConfig"))
    assert config["patch"]["supported"] is True
    assert config["filter"] == {"supported": True, "maxResults": 200}
    assert config["etag"]["supported"] is True
    assert config["bulk"]["supported"] is False
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    types = json_of(scim.call("GET", "/ResourceTypes"))
    assert [t["id"] for t in types["Resources"]] == ["User"]
    assert types["Resources"][0]["schemaExtensions"] == [{"schema": CITY_USER, "required": False}]
    schemas = json_of(scim.call("GET", "/Schemas"))
    assert {s["id"] for s in schemas["Resources"]} == {CORE_USER, CITY_USER}
    city = json_of(scim.call("GET", f"/Schemas/{CITY_USER}"))
    assert city["attributes"][0]["name"] == "realNameLevel"
    assert city["attributes"][0]["mutability"] == "readOnly"
    assert_error(scim.call("GET", "/Schemas/urn:nope"), 404)
    assert_error(scim.call("GET", "/ResourceTypes/Group"), 404)
    assert_error(scim.call("GET", "/Groups"), 404)
    assert_error(scim.call("GET", "/Me"), 501)
    assert_error(scim.call("DELETE", "/ServiceProviderConfig"), 405)
    for path in ("/scim/v1/Users", "/scim/", "/scim/v3/ServiceProviderConfig"):
        assert_error(scim.client.get(path), 400, "invalidVers")


# -- create and get


def test_create_and_get_a_user(app: Flask, scim: Scim) -> None:
    created = scim.create(
        "bjensen",
        externalId="hall-0001",
        displayName="Barbara Jensen",
        emails=[{"value": "BJensen@Example.cn", "primary": True, "type": "work"}],
        password=STRONG_PASSWORD,
    )
    assert created["userName"] == "bjensen"
    assert created["externalId"] == "hall-0001"
    assert created["emails"] == [{"value": "bjensen@example.cn", "primary": True}]
    assert created["active"] is True
    assert "password" not in created
    assert created[CITY_USER] == {"realNameLevel": 1}
    assert created["meta"]["resourceType"] == "User"
    assert created["meta"]["location"].endswith(f"/scim/v2/Users/{created['id']}")
    fetched = scim.call("GET", f"/Users/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.headers["ETag"] == created["meta"]["version"]
    assert json_of(fetched) == created
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("bjensen")
        assert user is not None
        assert user.public_id == created["id"]
        assert Accounts.of().account_service().confirm_password(user, STRONG_PASSWORD)
        events = (
            db().scalars(select(AuditEvent).where(AuditEvent.event == "scim.user.create")).all()
        )
    assert [(e.actor, e.outcome) for e in events] == [("client:hall", "success")]


def test_a_created_user_can_sign_in(app: Flask, scim: Scim) -> None:
    scim.create("carol", password=STRONG_PASSWORD)
    _, secret = register(app, "rp", first_party=True)
    tokens, _ = RP(app, "rp", secret).tokens(app.test_client(), username="carol")
    assert tokens["access_token"]


def test_a_duplicate_user_name_is_a_uniqueness_conflict(app: Flask, scim: Scim) -> None:
    create_user(app, "alice")
    for name in ("alice", "ALICE", "\uff21\uff4c\uff49\uff43\uff45"):  # case and width folded
        response = scim.call("POST", "/Users", {"schemas": [CORE_USER], "userName": name})
        assert_error(response, 409, "uniqueness")
    scim.create("dave")
    assert_error(
        scim.call("POST", "/Users", {"schemas": [CORE_USER], "userName": "Dave"}), 409, "uniqueness"
    )
    with app.app_context():
        assert db().scalar(select(func.count()).select_from(ScimUser)) == 1


@pytest.mark.parametrize(
    ("body", "scim_type"),
    [
        ({"userName": "nobody"}, "invalidSyntax"),  # no schemas
        ({"schemas": ["urn:wrong"], "userName": "nobody"}, "invalidSyntax"),
        ({"schemas": [CORE_USER, "urn:other:ext"], "userName": "nobody"}, "invalidValue"),
        ({"schemas": [CORE_USER]}, "invalidValue"),  # userName is required
        ({"schemas": [CORE_USER], "userName": 5}, "invalidValue"),
        ({"schemas": [CORE_USER], "userName": "a b"}, "invalidValue"),
        ({"schemas": [CORE_USER], "userName": "nobody", "password": "123"}, "invalidValue"),
        ({"schemas": [CORE_USER], "userName": "nobody", "emails": "x"}, "invalidValue"),
        (
            {"schemas": [CORE_USER], "userName": "nobody", "emails": [{"value": "not-an-address"}]},
            "invalidValue",
        ),
        (
            {
                "schemas": [CORE_USER],
                "userName": "nobody",
                "emails": [{"value": "a@b.cn"}, {"value": "c@d.cn"}],
            },
            "invalidValue",
        ),
        (
            {"schemas": [CORE_USER], "userName": "nobody", "nickname": {"x": 1}, "bogus": 1},
            "invalidValue",
        ),
        ({"schemas": [CORE_USER], "userName": "nobody", "externalId": "x" * 300}, "invalidValue"),
    ],
)
def test_a_bad_user_is_refused_and_nothing_is_created(
    app: Flask, scim: Scim, body: dict[str, Any], scim_type: str
) -> None:
    response = scim.call("POST", "/Users", body)
    assert_error(response, 400, scim_type)
    with app.app_context():
        assert Accounts.of().account_service().find_by_username("nobody") is None
        assert db().scalar(select(func.count()).select_from(ScimUser)) == 0


def test_a_body_that_is_not_json_is_invalid_syntax(scim: Scim) -> None:
    for data, content_type in (
        ("{not json", "application/scim+json"),
        ("[1, 2]", "application/scim+json"),
        ("userName=x", "application/x-www-form-urlencoded"),
        (b"\xff\xfe", "application/scim+json"),
    ):
        response = scim.client.post(
            BASE + "/Users",
            data=data,
            content_type=content_type,
            headers={"Authorization": f"Bearer {scim.token}"},
        )
        assert_error(response, 400, "invalidSyntax")


def test_the_real_name_level_is_read_only(app: Flask, scim: Scim) -> None:
    """Written on creation or replacement it is ignored (RFC 7644 3.5.1); a PATCH
    aimed at it is refused as a mutability error."""
    created = scim.create(
        "erin", **{"schemas": [CORE_USER, CITY_USER], CITY_USER: {"realNameLevel": 5}}
    )
    assert created[CITY_USER] == {"realNameLevel": 1}
    replaced = scim.call(
        "PUT",
        f"/Users/{created['id']}",
        {"schemas": [CORE_USER, CITY_USER], "userName": "erin", CITY_USER: {"realNameLevel": 4}},
    )
    assert json_of(replaced)[CITY_USER] == {"realNameLevel": 1}
    for operation in (
        {"op": "replace", "path": f"{CITY_USER}:realNameLevel", "value": 5},
        {"op": "replace", "value": {f"{CITY_USER}:realNameLevel": 5}},
        {"op": "replace", "path": "id", "value": "mine"},
    ):
        response = scim.call("PATCH", f"/Users/{created['id']}", patch_body(operation))
        assert_error(response, 400, "mutability")
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("erin")
        assert user is not None
        assert Accounts.of().realname_service().level(user) == 1


def test_the_level_shown_is_the_accounts_level_now(app: Flask, scim: Scim) -> None:
    created = scim.create("fay")
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("fay")
        assert user is not None
        Accounts.of().realname_service().record_verification(
            user, method=VerificationMethod.COUNTER, level=5, source="counter:test"
        )
    fetched = json_of(scim.call("GET", f"/Users/{created['id']}"))
    assert fetched[CITY_USER] == {"realNameLevel": 5}
    # the representation changed, so its version did
    assert fetched["meta"]["version"] != created["meta"]["version"]
    listed = json_of(scim.call("GET", "/Users", filter='userName eq "fay"'))
    assert listed["Resources"][0][CITY_USER] == {"realNameLevel": 5}


def test_refused_writes_are_audited_with_the_client_as_actor(app: Flask, scim: Scim) -> None:
    create_user(app, "taken")
    assert (
        scim.call("POST", "/Users", {"schemas": [CORE_USER], "userName": "taken"}).status_code
        == 409
    )
    created = scim.create("gus")
    bad = patch_body({"op": "replace", "path": "nosuch", "value": 1})
    assert scim.call("PATCH", f"/Users/{created['id']}", bad).status_code == 400
    with app.app_context():
        refused = (
            db()
            .scalars(
                select(AuditEvent).where(AuditEvent.outcome == "failure").order_by(AuditEvent.seq)
            )
            .all()
        )
    assert [(e.event, e.actor, e.details["reason"]) for e in refused] == [
        ("scim.user.create", "client:hall", "uniqueness"),
        ("scim.user.patch", "client:hall", "invalidPath"),
    ]
    assert audit_ok(app)


# -- replace and patch


def test_replace_a_user(scim: Scim) -> None:
    created = scim.create(
        "frank", externalId="f1", displayName="Frank", emails=[{"value": "f@x.cn"}]
    )
    response = scim.call(
        "PUT",
        f"/Users/{created['id']}",
        {"schemas": [CORE_USER], "userName": "frank2", "externalId": "f2"},
        headers={"If-Match": created["meta"]["version"]},
    )
    replaced = json_of(response)
    assert response.status_code == 200, replaced
    assert replaced["userName"] == "frank2"
    assert replaced["externalId"] == "f2"
    assert "displayName" not in replaced
    assert "emails" not in replaced
    assert replaced["meta"]["version"] != created["meta"]["version"]
    assert response.headers["ETag"] == replaced["meta"]["version"]
    # id is readOnly: a value sent is ignored (RFC 7644 3.5.1)
    again = scim.call(
        "PUT",
        f"/Users/{created['id']}",
        {"schemas": [CORE_USER], "userName": "frank3", "id": "other"},
    )
    assert json_of(again)["id"] == created["id"]


def test_a_stale_if_match_is_a_412_and_changes_nothing(scim: Scim) -> None:
    created = scim.create("gina", displayName="Gina")
    stale = created["meta"]["version"]
    assert (
        scim.call(
            "PATCH",
            f"/Users/{created['id']}",
            patch_body({"op": "replace", "path": "displayName", "value": "Gina B"}),
            headers={"If-Match": stale},
        ).status_code
        == 200
    )
    for method, body in (
        ("PUT", {"schemas": [CORE_USER], "userName": "gina", "displayName": "Lost update"}),
        ("PATCH", patch_body({"op": "replace", "path": "displayName", "value": "Lost update"})),
        ("DELETE", None),
    ):
        response = scim.call(method, f"/Users/{created['id']}", body, headers={"If-Match": stale})
        assert_error(response, 412)
    current = json_of(scim.call("GET", f"/Users/{created['id']}"))
    assert current["displayName"] == "Gina B"
    assert current["active"] is True
    wildcard = scim.call(
        "PATCH",
        f"/Users/{created['id']}",
        patch_body({"op": "replace", "path": "displayName", "value": "G"}),
        headers={"If-Match": "*"},
    )
    assert wildcard.status_code == 200


def _race(app: Flask, token: str, user_id: str, version: str) -> list[int]:
    """Four PATCHes with one version, released together; their statuses."""
    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def write(value: str) -> None:
        other = Scim.__new__(Scim)
        other.client, other.token = app.test_client(), token
        barrier.wait()
        response = other.call(
            "PATCH",
            f"/Users/{user_id}",
            patch_body({"op": "replace", "path": "displayName", "value": value}),
            headers={"If-Match": version},
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=write, args=(f"name {n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_parallel_writes_with_one_version_never_both_succeed(app: Flask, scim: Scim) -> None:
    """If-Match and the write it allows run under a lock on the resource: of parallel
    PATCHes sent with the same version, one wins and the others get 412 (no lost
    update)."""
    for attempt in range(3):
        created = scim.create(f"race{attempt}")
        statuses = _race(app, scim.token, created["id"], created["meta"]["version"])
        assert sorted(statuses) == [200, 412, 412, 412], statuses


def test_patch_add_replace_remove_with_paths_and_value_filters(scim: Scim) -> None:
    created = scim.create("hank", emails=[{"value": "h@x.cn", "primary": True}])
    path = f"/Users/{created['id']}"
    response = scim.call(
        "PATCH",
        path,
        patch_body(
            {"op": "add", "path": "displayName", "value": "Hank"},
            {"op": "replace", "path": 'emails[value eq "h@x.cn"].value', "value": "hank@x.cn"},
            {"op": "replace", "value": {"externalId": "h-1"}},
        ),
    )
    patched = json_of(response)
    assert response.status_code == 200, patched
    assert patched["displayName"] == "Hank"
    assert patched["emails"] == [{"value": "hank@x.cn", "primary": True}]
    assert patched["externalId"] == "h-1"
    removed = json_of(
        scim.call(
            "PATCH",
            path,
            patch_body(
                {"op": "remove", "path": 'emails[value eq "hank@x.cn"]'},
                {"op": "remove", "path": "displayName"},
            ),
        )
    )
    assert "emails" not in removed
    assert "displayName" not in removed
    assert removed["externalId"] == "h-1"


@pytest.mark.parametrize(
    ("operation", "scim_type"),
    [
        ({"op": "replace", "path": "nosuch", "value": 1}, "invalidPath"),
        ({"op": "replace", "path": "emails[", "value": "x"}, "invalidPath"),
        ({"op": "remove", "path": "userName"}, "mutability"),
        ({"op": "explode", "path": "userName"}, "invalidValue"),
        ({"op": "replace", "path": "userName", "value": "has space"}, "invalidValue"),
        ({"op": "add", "path": "emails", "value": [{"value": "second@x.cn"}]}, "invalidValue"),
    ],
)
def test_a_bad_patch_is_refused_and_changes_nothing(
    scim: Scim, operation: dict[str, Any], scim_type: str
) -> None:
    created = scim.create("ivan", emails=[{"value": "i@x.cn"}])
    path = f"/Users/{created['id']}"
    response = scim.call(
        "PATCH",
        path,
        patch_body({"op": "replace", "path": "displayName", "value": "Ivan"}, operation),
    )
    assert_error(response, 400, scim_type)
    assert json_of(scim.call("GET", path)) == created


def test_a_patch_filter_that_matches_nothing_is_refused(scim: Scim) -> None:
    created = scim.create("jill", emails=[{"value": "j@x.cn"}])
    response = scim.call(
        "PATCH",
        f"/Users/{created['id']}",
        patch_body(
            {"op": "replace", "path": 'emails[value eq "other@x.cn"].value', "value": "k@x.cn"}
        ),
    )
    assert response.status_code == 400
    assert json_of(response)["scimType"] in {"noTarget", "invalidFilter"}


def test_a_patch_body_without_the_patch_schema_is_refused(scim: Scim) -> None:
    created = scim.create("kim")
    response = scim.call(
        "PATCH",
        f"/Users/{created['id']}",
        {"Operations": [{"op": "remove", "path": "displayName"}]},
    )
    assert response.status_code == 400
    assert_error(
        scim.call("PATCH", f"/Users/{created['id']}", {"schemas": [PATCH_OP], "Operations": []}),
        400,
        "invalidValue",
    )


def test_a_password_change_over_scim_signs_the_account_out_elsewhere(
    app: Flask, scim: Scim
) -> None:
    created = scim.create("liam", password=STRONG_PASSWORD)
    new = "another long pass phrase 42"
    response = scim.call(
        "PATCH",
        f"/Users/{created['id']}",
        patch_body({"op": "replace", "path": "password", "value": new}),
    )
    assert response.status_code == 200
    assert "password" not in json_of(response)
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("liam")
        assert user is not None
        assert Accounts.of().account_service().confirm_password(user, new)
        assert user.sessions_valid_after is not None


# -- other clients' accounts


def test_a_client_sees_only_the_accounts_it_provisioned(
    app: Flask, client: FlaskClient, scim: Scim
) -> None:
    local = create_user(app, "local")
    ours = scim.create("ours")
    _, secret = register(app, "other", grant_types=["client_credentials"], scope="scim")
    other = Scim(client, "other", secret or "")
    for user_id in (ours["id"], local.public_id):
        for method, body in (
            ("GET", None),
            ("PUT", {"schemas": [CORE_USER], "userName": "stolen"}),
            ("PATCH", patch_body({"op": "replace", "path": "active", "value": False})),
            ("DELETE", None),
        ):
            assert_error(other.call(method, f"/Users/{user_id}", body), 404)
    assert json_of(other.call("GET", "/Users"))["totalResults"] == 0
    assert_error(scim.call("GET", f"/Users/{local.public_id}"), 404)
    assert json_of(scim.call("GET", f"/Users/{ours['id']}"))["active"] is True


# -- list, filter, sort, paginate, search


@pytest.fixture
def people(scim: Scim, clock: Any) -> list[dict[str, Any]]:
    made = []
    for index, (name, email, external) in enumerate(
        [
            ("anna", "anna@city.cn", "e-3"),
            ("bob", "bob@corp.cn", "e-1"),
            ("Cara", "cara@city.cn", None),
            ("dan_x", None, "E-2"),
            ("eve", "eve%@corp.cn", "e_4"),
        ]
    ):
        values: dict[str, Any] = {}
        if email:
            values["emails"] = [{"value": email}]
        if external:
            values["externalId"] = external
        made.append(scim.create(name, **values))
        clock.advance(10 * (index + 1))
    return made


def names(response: TestResponse) -> list[str]:
    body = json_of(response)
    assert response.status_code == 200, body
    return [resource["userName"] for resource in body["Resources"]]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('userName eq "ANNA"', ["anna"]),
        ('userName sw "c"', ["Cara"]),
        ('userName co "_"', ["dan_x"]),  # LIKE wildcards are escaped
        ('emails.value co "%"', ["eve"]),
        ('emails.value ew "@city.cn"', ["anna", "Cara"]),
        ('emails[value sw "bob"]', ["bob"]),
        ("emails pr", ["anna", "bob", "Cara", "eve"]),
        ("externalId pr", ["anna", "bob", "dan_x", "eve"]),
        ('externalId eq "e-1"', ["bob"]),
        ('externalId eq "E-1"', []),  # caseExact
        ("not (externalId pr)", ["Cara"]),
        ('userName eq "anna" or userName eq "bob" and externalId eq "e-9"', ["anna"]),
        ('(userName eq "anna" or userName eq "bob") and externalId eq "e-1"', ["bob"]),
        ('emails.value co "city" and externalId pr', ["anna"]),
        ("active eq true", ["anna", "bob", "Cara", "dan_x", "eve"]),
        ("active eq false", []),
        ('userName ne "anna"', ["bob", "Cara", "dan_x", "eve"]),
        ('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bob"', ["bob"]),
    ],
)
def test_filters(
    scim: Scim, people: list[dict[str, Any]], expression: str, expected: list[str]
) -> None:
    assert len(people) == 5
    assert names(scim.call("GET", "/Users", filter=expression)) == expected


def test_filter_on_last_modified(scim: Scim, people: list[dict[str, Any]]) -> None:
    third = people[2]["meta"]["lastModified"]
    assert names(scim.call("GET", "/Users", filter=f'meta.lastModified gt "{third}"')) == [
        "dan_x",
        "eve",
    ]
    assert names(scim.call("GET", "/Users", filter=f'meta.lastModified le "{third}"')) == [
        "anna",
        "bob",
        "Cara",
    ]
    assert_error(
        scim.call("GET", "/Users", filter='meta.lastModified gt "yesterday"'), 400, "invalidFilter"
    )


@pytest.mark.parametrize(
    "expression",
    [
        "userName eq",
        'userName eq "a" and',
        "((userName pr)",
        'password eq "x"',  # not filterable
        'nosuch eq "x"',
        'urn:other:schema:userName eq "x"',
        'userName zz "x"',
        'active co "t"',
        'emails[value eq "a"][value eq "b"]',
        '"; DROP TABLE users; --',
        "x" * 3000,
        " or ".join(['userName eq "a"'] * 60),
    ],
)
def test_an_invalid_filter_is_refused(scim: Scim, expression: str) -> None:
    assert_error(scim.call("GET", "/Users", filter=expression), 400, "invalidFilter")


def test_a_nul_in_the_query_is_a_scim_error(scim: Scim) -> None:
    """The app's input guard refuses it before the view; the answer is still SCIM's."""
    assert_error(scim.call("GET", "/Users", filter='userName eq "\x00"'), 400, "invalidSyntax")


def test_sort_and_paginate(scim: Scim, people: list[dict[str, Any]]) -> None:
    assert names(scim.call("GET", "/Users", sortBy="userName")) == [
        "anna",
        "bob",
        "Cara",
        "dan_x",
        "eve",
    ]
    assert names(scim.call("GET", "/Users", sortBy="userName", sortOrder="descending")) == [
        "eve",
        "dan_x",
        "Cara",
        "bob",
        "anna",
    ]
    # absent values last when ascending, first when descending
    assert names(scim.call("GET", "/Users", sortBy="externalId"))[-1] == "Cara"
    assert (
        names(scim.call("GET", "/Users", sortBy="externalId", sortOrder="descending"))[0] == "Cara"
    )
    assert names(scim.call("GET", "/Users", sortBy="emails.value"))[-1] == "dan_x"
    page = json_of(scim.call("GET", "/Users", sortBy="userName", startIndex="2", count="2"))
    assert page["totalResults"] == 5
    assert page["startIndex"] == 2
    assert page["itemsPerPage"] == 2
    assert [r["userName"] for r in page["Resources"]] == ["bob", "Cara"]
    empty = json_of(scim.call("GET", "/Users", count="0"))
    assert empty["totalResults"] == 5
    assert not empty.get("Resources")
    beyond = json_of(scim.call("GET", "/Users", startIndex="99"))
    assert beyond["totalResults"] == 5
    assert not beyond.get("Resources")
    clamped = json_of(scim.call("GET", "/Users", startIndex="-4", count="1"))
    assert clamped["startIndex"] == 1
    for bad in ({"startIndex": "one"}, {"count": "1.5"}, {"sortOrder": "sideways"}):
        response = scim.client.get(
            BASE + "/Users", query_string=bad, headers={"Authorization": f"Bearer {scim.token}"}
        )
        assert_error(response, 400, "invalidValue")
    assert_error(scim.call("GET", "/Users", sortBy="nosuch"), 400, "invalidPath")


def test_attributes_and_excluded_attributes(scim: Scim, people: list[dict[str, Any]]) -> None:
    only = json_of(scim.call("GET", "/Users", attributes="userName", filter='userName eq "anna"'))
    assert only["Resources"] == [
        {"schemas": [CORE_USER], "id": people[0]["id"], "userName": "anna"}
    ]
    without = json_of(
        scim.call("GET", f"/Users/{people[0]['id']}", excludedAttributes="emails,externalId")
    )
    assert "emails" not in without
    assert "externalId" not in without
    assert without["userName"] == "anna"


def test_search_with_post(scim: Scim, people: list[dict[str, Any]]) -> None:
    body = {
        "schemas": [SEARCH_REQUEST],
        "filter": 'emails.value ew "@corp.cn"',
        "sortBy": "userName",
        "sortOrder": "descending",
        "attributes": ["userName"],
        "startIndex": 1,
        "count": 10,
    }
    for path in ("/Users/.search", "/.search"):
        response = scim.call("POST", path, body)
        assert names(response) == ["eve", "bob"]
        assert json_of(response)["schemas"] == [
            "urn:ietf:params:scim:api:messages:2.0:ListResponse"
        ]
    assert_error(
        scim.call("POST", "/Users/.search", {"filter": "userName pr"}), 400, "invalidSyntax"
    )
    assert_error(
        scim.call("POST", "/Users/.search", {"schemas": [SEARCH_REQUEST], "filter": "userName eq"}),
        400,
        "invalidFilter",
    )
    assert_error(
        scim.call("POST", "/Users/.search", {"schemas": [SEARCH_REQUEST], "count": "many"}),
        400,
        "invalidValue",
    )
    assert len(people) == 5


# -- deactivation


@pytest.fixture
def signed_in(app: Flask, scim: Scim) -> tuple[dict[str, Any], RP, dict[str, Any], FlaskClient]:
    created = scim.create("mona", password=STRONG_PASSWORD)
    _, secret = register(
        app,
        "rp",
        first_party=True,
        scope="openid profile offline_access",
        backchannel_logout_uri="https://rp.example.gov.cn/backchannel",
    )
    rp = RP(app, "rp", secret)
    browser = app.test_client()
    tokens, _ = rp.tokens(browser, username="mona", scope="openid offline_access")
    assert browser.get("/account").status_code == 200
    return created, rp, tokens, browser


def _ended(app: Flask, rp: RP, tokens: dict[str, Any], browser: FlaskClient) -> None:
    """The account's session, access token and refresh token are dead, and its
    service is owed a back-channel logout."""
    refreshed = rp.token_request(
        app.test_client(), {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 400, refreshed.get_data(as_text=True)
    assert refreshed.get_json()["error"] == "invalid_grant"
    introspected = rp.post(app.test_client(), "/introspect", {"token": tokens["access_token"]})
    assert introspected.get_json() == {"active": False}
    assert browser.get("/account").status_code == 302
    with app.app_context():
        owed = db().scalars(select(LogoutDelivery).where(LogoutDelivery.client_id == "rp")).all()
    assert len(owed) == 1


def test_active_false_disables_the_account_and_ends_its_sessions_and_tokens(
    app: Flask, scim: Scim, signed_in: tuple[dict[str, Any], RP, dict[str, Any], FlaskClient]
) -> None:
    created, rp, tokens, browser = signed_in
    # the tokens work before
    assert rp.post(app.test_client(), "/introspect", {"token": tokens["access_token"]}).get_json()[
        "active"
    ]
    response = scim.call(
        "PATCH",
        f"/Users/{created['id']}",
        patch_body({"op": "replace", "path": "active", "value": False}),
    )
    assert json_of(response)["active"] is False
    _ended(app, rp, tokens, browser)
    assert names(scim.call("GET", "/Users", filter="active eq false")) == ["mona"]
    # the account cannot sign in again until re-activated
    again = scim.call(
        "PATCH", f"/Users/{created['id']}", patch_body({"op": "replace", "value": {"active": True}})
    )
    assert json_of(again)["active"] is True
    fresh, _ = rp.tokens(app.test_client(), username="mona")
    assert fresh["access_token"]
    with app.app_context():
        statuses = (
            db()
            .scalars(
                select(AuditEvent)
                .where(AuditEvent.event == "account.status")
                .order_by(AuditEvent.seq)
            )
            .all()
        )
    assert [(e.actor, e.details["status"]) for e in statuses] == [
        ("client:hall", "disabled"),
        ("client:hall", "active"),
    ]


def test_delete_disables_the_account_and_the_resource_is_gone(
    app: Flask, scim: Scim, signed_in: tuple[dict[str, Any], RP, dict[str, Any], FlaskClient]
) -> None:
    created, rp, tokens, browser = signed_in
    response = scim.call("DELETE", f"/Users/{created['id']}")
    assert response.status_code == 204
    assert not response.data
    _ended(app, rp, tokens, browser)
    for method in ("GET", "DELETE"):
        assert_error(scim.call(method, f"/Users/{created['id']}"), 404)
    assert json_of(scim.call("GET", "/Users"))["totalResults"] == 0
    with app.app_context():
        user = Accounts.of().account_service().find_by_username("mona")
        assert user is not None
        assert not Accounts.of().account_service().is_active(user.id)
        deleted = (
            db().scalars(select(AuditEvent).where(AuditEvent.event == "scim.user.delete")).all()
        )
    assert [(e.actor, e.outcome) for e in deleted] == [("client:hall", "success")]
    assert audit_ok(app)


def audit_ok(app: Flask) -> bool:
    with app.app_context():
        return bool(audit_log().verify().ok)
